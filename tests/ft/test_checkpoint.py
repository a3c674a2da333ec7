"""The checkpoint engine on one process: staging, the disk tier, the memory tier, and bad input."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import suanli.ft.checkpoint.storage as storage_module
from suanli.ft.checkpoint import manifest as mf
from suanli.ft.checkpoint.agent import start_agent
from suanli.ft.checkpoint.engine import CheckpointEngine
from suanli.ft.checkpoint.manifest import CheckpointError
from suanli.ft.checkpoint.memory_tier import AgentClient, SlotTable
from suanli.ft.checkpoint.replica import holders, replica_node
from suanli.ft.checkpoint.staging import HostBuffer, flatten, stage, staged_state, unflatten
from suanli.ft.checkpoint.state import DataPosition, ModelState, OptimizerState, RNGState
from suanli.ft.checkpoint.storage import ChecksummingWriter, LocalStorage

REPO = Path(__file__).resolve().parents[2]


def _training(seed: int = 0, hidden: int = 16):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.Dropout(0.1), torch.nn.Linear(hidden, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2)
    position = DataPosition()
    state = {
        "model": ModelState(model),
        "optimizer": OptimizerState(model, optimizer),
        "lr_scheduler": scheduler,
        "dataloader": position,
        "rng": RNGState(),
    }

    def step() -> float:
        x = torch.randn(4, 8)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        position.batch_index += 1
        return loss.item()

    return state, step


@pytest.fixture
def agent_dir(tmp_path):
    folder = tmp_path / "agents"
    agent = start_agent(0, folder)
    yield folder
    agent.terminate()
    agent.wait(timeout=30)


# -- staging ------------------------------------------------------------------------------------

nested = st.recursive(
    st.one_of(
        st.integers(),
        st.text(max_size=5),
        st.builds(lambda n: torch.arange(n, dtype=torch.float32), st.integers(0, 40)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text("abc", min_size=1, max_size=3), children, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text("xyz", min_size=1, max_size=3), nested, max_size=4))
def test_staging_round_trips_and_never_aliases_the_live_state(state):
    snapshot, buffer, live = stage(state, HostBuffer())
    copy = staged_state(snapshot, buffer, live)
    skeleton, tensors, objects = flatten(state)
    _, copied, copied_objects = flatten(copy)
    assert copied_objects == objects
    for path, tensor in tensors.items():
        assert torch.equal(copied[path], tensor)
        tensor.add_(1)  # a later optimizer update must not leak into the staged copy
        assert tensor.numel() == 0 or not torch.equal(copied[path], tensor)
    assert unflatten(skeleton, tensors, objects).keys() == state.keys()


def test_staging_reuses_one_preallocated_buffer():
    acquire = HostBuffer()
    state = {"w": torch.randn(1000)}
    _, first, _ = stage(state, acquire)
    state["w"].mul_(2)
    _, second, _ = stage(state, acquire)
    assert first.data_ptr() == second.data_ptr()


# -- ring placement -----------------------------------------------------------------------------


@given(st.integers(2, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_ring_places_each_replica_on_another_node_and_every_node_holds_one(case):
    nodes, node = case
    assert replica_node(node, nodes) != node
    assert sorted(replica_node(i, nodes) for i in range(nodes)) == list(range(nodes))
    assert holders(node, nodes)[0] == node


def test_single_node_has_no_replica():
    assert replica_node(0, 1) is None
    with pytest.raises(ValueError, match="node_id"):
        replica_node(3, 2)


# -- disk tier ----------------------------------------------------------------------------------


def test_disk_round_trip_resumes_identically_and_keeps_last_n(tmp_path):
    state, step = _training()
    engine = CheckpointEngine(tmp_path / "ckpt", keep_last=2)
    for s in range(1, 5):
        step()
        engine.save(s, state)
    engine.close()
    expected = [step() for _ in range(3)]
    assert mf.committed_steps(engine.storage) == [3, 4]
    assert mf.verify(engine.storage, mf.checkpoint_name(4)).step == 4

    fresh, fresh_step = _training(seed=99)
    resumed = CheckpointEngine(tmp_path / "ckpt")
    assert resumed.load(fresh) == 4
    assert resumed.restored.tier == "disk"
    assert fresh["dataloader"].batch_index == 4
    assert [fresh_step() for _ in range(3)] == expected


def test_the_writer_records_each_files_checksum_and_plain_dcp_reads_it_back(tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    from suanli.ft.checkpoint.storage import crc32_of

    state = {
        "w": torch.randn(1000, 3),
        "half": torch.arange(7, dtype=torch.bfloat16),
        "ids": torch.arange(5, dtype=torch.int64),
        "empty": torch.empty(0),
        "extra": {"epoch": 3, "name": "run"},
    }
    storage = LocalStorage(tmp_path)
    writer = storage.writer("step-1")
    dcp.save(state, storage_writer=writer, no_dist=True)
    assert writer.checksums  # one entry per shard file, nothing unchecked
    for name, recorded in writer.checksums.items():
        assert recorded == crc32_of(storage.read_chunks("step-1", name))

    loaded = {key: torch.zeros_like(value) for key, value in state.items() if isinstance(value, torch.Tensor)}
    loaded["extra"] = {"epoch": 0, "name": ""}
    dcp.load(loaded, storage_reader=FileSystemReader(tmp_path / "step-1"), no_dist=True)
    assert all(torch.equal(loaded[key], state[key]) for key in ("w", "half", "ids", "empty"))
    assert loaded["extra"] == state["extra"]


def _write_shard(folder: Path, state: dict) -> tuple[bytes, dict[str, tuple[int, int]]]:
    import torch.distributed.checkpoint as dcp

    writer = LocalStorage(folder).writer("step-1")
    dcp.save(state, storage_writer=writer, no_dist=True)
    (shard,) = (folder / "step-1").glob("*.distcp")
    return shard.read_bytes(), writer.checksums


def test_early_writeback_covers_each_shard_in_order_and_changes_no_byte(tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    state = {"w": torch.randn(3000, 7), "ids": torch.arange(5000, dtype=torch.int64), "extra": {"epoch": 3}}
    monkeypatch.setattr(storage_module, "WRITEBACK_BYTES", 4096)
    platform_writeback = storage_module._start_writeback_fn
    ranges: list[tuple[int, int]] = []

    def recorded(fd: int, offset: int, nbytes: int, flags: int) -> int:
        ranges.append((offset, nbytes))
        return platform_writeback(fd, offset, nbytes, flags) if platform_writeback else 0

    monkeypatch.setattr(storage_module, "_start_writeback_fn", recorded)
    written_back, checksums = _write_shard(tmp_path / "writeback", state)
    monkeypatch.setattr(storage_module, "_start_writeback_fn", None)  # a platform without it
    assert not storage_module.start_writeback(0, 0, 4096)
    plain, plain_checksums = _write_shard(tmp_path / "plain", state)

    assert written_back == plain and checksums == plain_checksums
    assert ranges[0][0] == 0
    assert all(offset + nbytes == after for (offset, nbytes), (after, _) in itertools.pairwise(ranges))
    assert all(nbytes >= 4096 for _, nbytes in ranges)
    assert 0 <= len(plain) - sum(nbytes for _, nbytes in ranges) < 4096  # the tail is the fsync's
    for folder in ("writeback", "plain"):
        loaded = {"w": torch.zeros(3000, 7), "ids": torch.zeros(5000, dtype=torch.int64), "extra": {}}
        dcp.load(loaded, storage_reader=FileSystemReader(tmp_path / folder / "step-1"), no_dist=True)
        assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["ids"], state["ids"])


@pytest.mark.skipif(storage_module._start_writeback_fn is None, reason="no sync_file_range here")
def test_a_refused_writeback_is_an_error_not_ignored():
    with pytest.raises(OSError, match="Bad file descriptor"):
        storage_module.start_writeback(-1, 0, 4096)


def test_fresh_start_returns_none(tmp_path):
    state, _ = _training()
    assert CheckpointEngine(tmp_path / "empty").load(state) is None


def _committed(tmp_path) -> Path:
    state, step = _training()
    engine = CheckpointEngine(tmp_path / "ckpt")
    step()
    engine.save(1, state)
    engine.close()
    return tmp_path / "ckpt" / mf.checkpoint_name(1)


def _shard(folder: Path) -> Path:
    return next(p for p in folder.iterdir() if p.suffix == ".distcp")


def _load_error(tmp_path) -> str:
    state, _ = _training(seed=5)
    with pytest.raises(CheckpointError) as error:
        CheckpointEngine(tmp_path / "ckpt").load(state)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_corrupted_shard_is_named(tmp_path):
    shard = _shard(_committed(tmp_path))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    message = _load_error(tmp_path)
    assert str(shard) in message and "checksum" in message


def test_truncated_shard_is_named(tmp_path):
    shard = _shard(_committed(tmp_path))
    shard.write_bytes(shard.read_bytes()[:100])
    message = _load_error(tmp_path)
    assert str(shard) in message and "truncated" in message


def test_missing_shard_is_named(tmp_path):
    shard = _shard(_committed(tmp_path))
    shard.unlink()
    message = _load_error(tmp_path)
    assert str(shard) in message and "missing shard" in message


def test_directory_without_manifest_or_dcp_metadata_is_reported_and_quarantined(tmp_path):
    folder = _committed(tmp_path)
    (folder / mf.MANIFEST_FILE).unlink()
    (folder / mf.METADATA_FILE).unlink()
    message = _load_error(tmp_path)
    assert str(folder / mf.MANIFEST_FILE) in message and "not completed" in message
    assert not folder.exists() and (tmp_path / "ckpt" / (folder.name + mf.QUARANTINE_SUFFIX)).is_dir()


def test_corrupt_newest_checkpoint_is_quarantined_and_the_older_one_resumes(tmp_path, caplog):
    state, step = _training()
    engine = CheckpointEngine(tmp_path / "ckpt", keep_last=2)
    for s in (1, 2):
        step()
        engine.save(s, state)
    engine.close()
    newest = tmp_path / "ckpt" / mf.checkpoint_name(2)
    shard = _shard(newest)
    shard.write_bytes(shard.read_bytes()[:100])

    fresh, _ = _training(seed=9)
    resumed = CheckpointEngine(tmp_path / "ckpt")
    assert resumed.load(fresh) == 1
    assert resumed.restored.where.endswith(mf.checkpoint_name(1))
    assert fresh["dataloader"].batch_index == 1
    assert (tmp_path / "ckpt" / "step-2.corrupt").is_dir() and not newest.exists()
    warnings = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(warnings) == 1 and str(newest) in warnings[0] and "truncated" in warnings[0]
    assert "\n" not in warnings[0]


def test_overlapped_save_snapshots_the_state_as_it_was_when_save_was_called(tmp_path):
    weights = torch.arange(1_000_000, dtype=torch.float32)
    engine = CheckpointEngine(tmp_path / "ckpt")
    engine.save(1, {"w": weights}, overlap=True)
    engine.wait_for_snapshot()  # what the loop does before the optimizer step
    weights.add_(1)
    engine.close()
    restored = {"w": torch.zeros(1_000_000)}
    assert CheckpointEngine(tmp_path / "ckpt").load(restored) == 1
    assert torch.equal(restored["w"], torch.arange(1_000_000, dtype=torch.float32))


def test_dcp_plans_while_the_copy_runs_and_writes_no_byte_before_it_is_done(tmp_path, monkeypatch):
    import suanli.ft.checkpoint.engine as engine_module

    copy_may_run, writing_waits = threading.Event(), threading.Event()
    copy_tensors, finish_plan = engine_module.copy_tensors, engine_module._WritesAfterCopy.finish_plan

    def held_copy(*args, **kwargs):
        assert copy_may_run.wait(timeout=60)
        copy_tensors(*args, **kwargs)

    def finish_plan_reached(self, plan):
        writing_waits.set()  # DCP's plan is made: all that is left is to write
        return finish_plan(self, plan)

    monkeypatch.setattr(engine_module, "copy_tensors", held_copy)
    monkeypatch.setattr(engine_module._WritesAfterCopy, "finish_plan", finish_plan_reached)
    weights = torch.arange(100_000, dtype=torch.float32)
    engine = CheckpointEngine(tmp_path / "ckpt")
    engine.save(1, {"w": weights}, overlap=True)
    assert writing_waits.wait(timeout=60)  # planned while the copy had not even started
    time.sleep(0.2)
    assert not list((tmp_path / "ckpt").glob("*/*.distcp"))
    copy_may_run.set()
    engine.wait_for_snapshot()
    weights.add_(1)
    engine.close()
    restored = {"w": torch.zeros(100_000)}
    assert CheckpointEngine(tmp_path / "ckpt").load(restored) == 1
    assert torch.equal(restored["w"], torch.arange(100_000, dtype=torch.float32))


class _FullDisk(LocalStorage):
    def writer(self, name: str) -> ChecksummingWriter:
        class Failing(ChecksummingWriter):
            def write_data(self, plan, planner):
                raise OSError(28, "No space left on device")

        return Failing(self.root / name)


def test_a_failed_background_write_is_one_line_naming_the_checkpoint_and_commits_nothing(tmp_path):
    engine = CheckpointEngine(_FullDisk(tmp_path / "ckpt"))
    engine.save(1, {"w": torch.ones(10)}, overlap=True)
    with pytest.raises(CheckpointError, match=r"step-1.partial: could not write .*No space left") as error:
        engine.wait()  # DCP raises a BaseException carrying every rank's traceback
    assert "\n" not in str(error.value) and engine.latest() is None


def test_a_failed_copy_fails_the_save_and_commits_nothing(tmp_path, monkeypatch):
    import suanli.ft.checkpoint.engine as engine_module

    def lost_device(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine_module, "copy_tensors", lost_device)
    engine = CheckpointEngine(tmp_path / "ckpt")
    engine.save(1, {"w": torch.ones(10)}, overlap=True)
    with pytest.raises(RuntimeError, match="device lost"):
        engine.wait_for_snapshot()
    with pytest.raises(RuntimeError, match="device lost"):
        engine.wait()  # the disk write, waiting for the copy, fails as well
    assert engine.latest() is None


def test_unreadable_manifest_is_reported(tmp_path):
    folder = _committed(tmp_path)
    (folder / mf.MANIFEST_FILE).write_text("{not json")
    assert "unreadable manifest" in _load_error(tmp_path)


def test_checkpoint_of_another_model_is_refused_before_anything_is_loaded(tmp_path):
    _committed(tmp_path)
    other, _ = _training(seed=5, hidden=32)
    before = [p.clone() for p in other["model"].model.parameters()]
    with pytest.raises(CheckpointError, match=r"\.metadata: .*another model"):
        CheckpointEngine(tmp_path / "ckpt").load(other)
    assert all(torch.equal(a, b) for a, b in zip(before, other["model"].model.parameters(), strict=True))


def test_partial_directory_is_never_loaded_and_is_cleaned_up(tmp_path):
    folder = _committed(tmp_path)
    partial = tmp_path / "ckpt" / mf.partial_name(2)
    shutil.copytree(folder, partial)
    engine = CheckpointEngine(tmp_path / "ckpt")
    assert engine.latest() == 1
    assert not partial.exists()


# -- killed mid-save -----------------------------------------------------------------------------


class _StallingStorage(LocalStorage):
    """Signals, then hangs, right before publishing step 2: the moment a crash does the most harm."""

    def commit(self, partial_name: str, name: str) -> None:
        if name == mf.checkpoint_name(2):
            (self.root / "committing").touch()
            time.sleep(600)
        super().commit(partial_name, name)


def _child_saves(folder: str, mode: str) -> None:
    storage = _StallingStorage(folder) if mode == "stall" else LocalStorage(folder)
    engine = CheckpointEngine(storage, keep_last=2)
    weights = torch.zeros(2_000_000)
    for s in range(1, 10_000):
        weights.fill_(s)
        engine.save(s, {"weights": weights, "step_seen": s})


def _spawn_child(folder: Path, mode: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, str(folder), mode], env=environment)


def _restore_plain(folder: Path) -> tuple[int | None, torch.Tensor, dict]:
    state = {"weights": torch.empty(2_000_000), "step_seen": -1}
    step = CheckpointEngine(folder).load(state)
    return step, state["weights"], state


def _wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_kill_while_publishing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path):
    folder = tmp_path / "ckpt"
    child = _spawn_child(folder, "stall")
    _wait_for(lambda: (folder / "committing").exists())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert (folder / mf.partial_name(2)).exists()  # fully written, never published
    step, weights, state = _restore_plain(folder)
    assert step == 1 and state["step_seen"] == 1 and bool((weights == 1).all())


def test_kill_at_an_arbitrary_moment_of_a_save_loop_leaves_a_consistent_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    child = _spawn_child(folder, "loop")
    _wait_for(lambda: len(mf.committed_steps(LocalStorage(folder))) >= 2)
    time.sleep(0.13)  # lands somewhere inside a save
    child.send_signal(signal.SIGKILL)
    child.wait()
    step, weights, state = _restore_plain(folder)
    assert step is not None and step >= 2
    assert state["step_seen"] == step and bool((weights == step).all())


# -- memory tier --------------------------------------------------------------------------------


def test_memory_tier_survives_a_worker_restart(tmp_path, agent_dir):
    state, step = _training()
    engine = CheckpointEngine(tmp_path / "ckpt", agent_dir=agent_dir, disk_every=1000)
    for s in range(1, 4):
        step()
        engine.save(s, state)
    engine.close()
    expected = [step() for _ in range(3)]
    assert engine.latest() is None  # nothing reached disk: only the agent's memory has it

    restarted, restarted_step = _training(seed=7)
    resumed = CheckpointEngine(tmp_path / "ckpt", agent_dir=agent_dir)
    assert resumed.load(restarted) == 3
    assert resumed.restored.tier == "memory"
    assert [restarted_step() for _ in range(3)] == expected


def test_save_returns_before_the_agent_hands_out_the_slot_that_still_holds_the_snapshot(
    tmp_path, agent_dir, monkeypatch
):
    slot_may_be_reserved = threading.Event()
    reserve = AgentClient.reserve

    def held_reserve(self, owner: int, size_bytes: int):
        assert slot_may_be_reserved.wait(timeout=10)  # save() itself would wait here, and time out
        return reserve(self, owner, size_bytes)

    monkeypatch.setattr(AgentClient, "reserve", held_reserve)
    weights = torch.arange(1000, dtype=torch.float32)
    engine = CheckpointEngine(tmp_path / "ckpt", agent_dir=agent_dir, disk_every=1000)
    engine.save(1, {"w": weights}, overlap=True)
    assert engine.busy()
    slot_may_be_reserved.set()
    engine.wait_for_snapshot()
    weights.add_(1)
    engine.close()
    restored = {"w": torch.zeros(1000)}
    resumed = CheckpointEngine(tmp_path / "ckpt", agent_dir=agent_dir)
    assert resumed.load(restored) == 1 and resumed.restored.tier == "memory"
    assert torch.equal(restored["w"], torch.arange(1000, dtype=torch.float32))


def test_memory_snapshot_of_another_model_falls_back_to_disk(tmp_path, agent_dir):
    state, step = _training()
    engine = CheckpointEngine(tmp_path / "ckpt", agent_dir=agent_dir, disk_every=1000)
    step()
    engine.save(1, state)
    engine.close()
    other, _ = _training(seed=3, hidden=32)
    assert CheckpointEngine(tmp_path / "ckpt", agent_dir=agent_dir).load(other) is None


def test_a_restarted_agent_adopts_sealed_snapshots_and_frees_the_rest(tmp_path):
    folder = tmp_path / "shm"
    table = SlotTable.adopt(folder)
    sealed, _ = table.reserve(owner=0, size_bytes=64)
    table.commit(0, sealed, step=4, meta=b"meta", crc32=None)
    table.seal(0, sealed, step=4, crc32=1234)
    unsealed, _ = table.reserve(owner=0, size_bytes=64)
    table.commit(0, unsealed, step=5, meta=b"meta", crc32=None)  # killed before its checksum

    adopted = SlotTable.adopt(folder)  # the agent died; its successor finds the folder
    assert adopted.steps(0) == [4]
    assert adopted.find(0, 4).crc32 == 1234 and adopted.find(0, 4).meta == b"meta"
    assert sorted(p.name for p in folder.iterdir()) == [f"rank0-slot{sealed}", f"rank0-slot{sealed}.json"]


class _GatedStorage(LocalStorage):
    """Holds every publish until the test opens the gate; fails it instead when told to."""

    def __init__(self, root, fail: bool = False) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.fail = fail

    def commit(self, partial_name: str, name: str) -> None:
        assert self.gate.wait(timeout=60)
        if self.fail:
            raise OSError("disk full")
        super().commit(partial_name, name)


@pytest.mark.parametrize("disk_fails", [False, True])
def test_the_peer_copy_of_a_save_follows_its_disk_write_even_a_failed_one(tmp_path, disk_fails):
    agents = tmp_path / "agents"
    started = [start_agent(node, agents) for node in (0, 1)]
    try:
        storage = _GatedStorage(tmp_path / "ckpt", fail=disk_fails)
        engine = CheckpointEngine(storage, node_id=0, nodes=2, agent_dir=agents)
        peer = AgentClient(agents, 1)
        engine.save(1, {"w": torch.arange(1000.0)})
        engine.wait_for_snapshot()
        time.sleep(0.3)  # ample time for a replica that did not wait
        assert peer.steps(0) == [] and "replica" not in engine.costs()
        storage.gate.set()
        if disk_fails:
            with pytest.raises(CheckpointError, match="disk full"):
                engine.wait()
        else:
            engine.wait()
        assert peer.steps(0) == [1]
        costs = engine.costs()
        assert costs["replica"].finished_s > costs["disk_write"].finished_s
        assert {"copy", "checksum", "replica", "disk_write", "commit"} <= set(costs)
        assert ("prune" in costs) is not disk_fails  # nothing is deleted for a save that failed
        assert all(c.wall_s >= 0 and c.cpu_s >= 0 for c in costs.values())
        engine.close()
    finally:
        for agent in started:
            agent.terminate()
            agent.wait(timeout=30)


def test_without_an_agent_saves_still_reach_disk(tmp_path):
    state, step = _training()
    engine = CheckpointEngine(tmp_path / "ckpt", agent_dir=tmp_path / "no-agents")
    step()
    engine.save(1, state)
    engine.close()
    assert engine.latest() == 1


if __name__ == "__main__":
    _child_saves(sys.argv[1], sys.argv[2])
