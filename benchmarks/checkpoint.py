"""Checkpoint engine benchmark: training time lost per save, blocking, persist rate, recovery, memory.

One sharded state (weight matrices as DTensors whose rows are sharded over a 4-rank gloo mesh, as
under FSDP) of --total-gb, emulating 2 nodes x 2 ranks with one supervised checkpoint agent per
node. Every rank runs a stand-in training step
(single-threaded matmuls) so that what a save costs the steps around it can be measured:

- **time lost per save** = blocking + the signed extra time of the following steps over the
  median of the undisturbed steps just before the save, counted until the save's background work
  is done (at least one step);
  measured the same way for `torch.save` (each rank its shard, with and without its CRC-32),
  DCP `save`, DCP `async_save` and ours (in-loop copy and overlapped copy; "ours" is the mode the
  runtime's `CopyModeChoice` picks, the cheaper one); the median of --saves saves per method;
- blocking time alone (the "stall") for the same methods;
- our persist throughput (save start until committed on disk, with checksums, no training
  running, as for the disk rate) against the disk's own sequential write rate, sampled before and
  after each of the persist saves (the median of both); and against the same writes starting the
  device's writeback every 16 MiB as our writer does (`persist_ratio_vs_disk_with_writeback`);
- the CPU seconds of each part of a save's background work (all ranks, and the agents receiving
  replicas) beside those of `torch.save`: where every core trains, their ratio is the floor of
  the time lost per save;
- restore time from the agents' memory; resident memory over --rss-saves saves (memory tiers);
- steps lost after a real SIGKILL of a random rank at a random moment of a running job that saves
  every step (the job restarts under the launcher and reports the step it restored).

    python benchmarks/checkpoint.py --quick --json   # 512 MB state, about a minute
    python benchmarks/checkpoint.py                  # 2 GB state
    python benchmarks/checkpoint.py --quick --json --host-idle   # the step is a sleep: as on a GPU node

With a CPU-bound step every core is busy training, so whatever a save does in the background
(copy, checksums, replica, DCP write) is taken from the steps it overlaps. `--host-idle` replaces
the step by a sleep, as when the host waits for an accelerator: that figure is an emulation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHUNK_BYTES = 4 << 20
TENSOR_BYTES = 32 << 20
# Matrices, not flat vectors: DCP plans a DTensor shard with an index tensor as long as its sharded
# dimension (torch 2.13), which for 8M-element vectors costs more CPU than writing them.
HIDDEN = 4096
RANKS_PER_NODE = 2
MATMUL = 384  # the stand-in step: MATMUL^3 multiply-adds, repeated
KILL_STATE_BYTES = 64 << 20
KILL_STEPS = 400
PERSIST_SAVES = 3
BACKGROUND = ("copy", "checksum", "replica", "disk_write", "commit", "prune")  # CheckpointEngine.costs()
PRE_STEPS = 4  # undisturbed steps before each save, whose median is that save's baseline
HOST_IDLE_STEP_S = 0.25  # --host-idle: an emulated accelerator step, the host cores free meanwhile


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure_worker(out: Path, total_bytes: int, saves: int, rss_saves: int, host_idle: bool) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    from suanli.ft.checkpoint.agent import AGENT_DIR_ENV
    from suanli.ft.checkpoint.engine import CheckpointEngine
    from suanli.ft.checkpoint.memory_tier import address_file
    from suanli.ft.checkpoint.storage import WRITEBACK_BYTES, start_writeback

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    agent_dir = Path(os.environ[AGENT_DIR_ENV])
    mesh = init_device_mesh("cpu", (world,))
    async_group = dist.new_group(backend="gloo")  # async_save's collectives run beside the main thread's
    local_bytes = total_bytes // world
    count = max(1, local_bytes // TENSOR_BYTES)
    rows = max(1, local_bytes // count // 4 // HIDDEN)

    def sharded(value: float) -> DTensor:
        """A weight matrix whose rows are sharded over the ranks, as FSDP shards dim 0."""
        return DTensor.from_local(
            torch.full((rows, HIDDEN), value, dtype=torch.float32), mesh, [Shard(0)], run_check=False
        )

    state = {
        "model": {f"layers.{i}.weight": sharded(i) for i in range(count // 3 or 1)},
        "optimizer": {f"layers.{i}.exp_avg": sharded(-i) for i in range(count - (count // 3 or 1))},
    }
    state_bytes = sum(t.to_local().nbytes for part in state.values() for t in part.values())
    local = {key: t.to_local() for part in state.values() for key, t in part.items()}
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, float | str] = {}
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)

    def train_step(before_update=lambda: None) -> tuple[float, float]:
        """(seconds, of which waiting before the update): forward/backward, wait, update, sync."""
        start = time.perf_counter()
        if host_idle:
            time.sleep(HOST_IDLE_STEP_S)  # the host waits while a device computes
        else:
            for _ in range(12):
                torch.mm(a, b)
        wait_start = time.perf_counter()
        before_update()
        waited_s = time.perf_counter() - wait_start
        dist.barrier()  # data parallel: the slowest rank sets the pace
        return time.perf_counter() - start, waited_s

    def slowest(value: float) -> float:
        gathered = [0.0] * world
        dist.all_gather_object(gathered, value)
        return max(gathered)

    def total(value: float) -> float:
        gathered = [0.0] * world
        dist.all_gather_object(gathered, value)
        return sum(gathered)

    def agents_cpu_s() -> float:
        """CPU seconds the node agents have used so far (they receive the replicas)."""
        used = 0.0
        for node in range(world // RANKS_PER_NODE):
            pid = json.loads(address_file(agent_dir, node).read_text())["pid"]
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return used

    def anyone(flag: bool) -> bool:
        gathered = [False] * world
        dist.all_gather_object(gathered, flag)
        return any(gathered)

    chunk = os.urandom(CHUNK_BYTES)

    def disk_rate_gb_s(writeback: bool = False) -> tuple[float, float]:
        """The disk's own sequential write rate, all ranks at once, each its share then fsync; and
        the CPU seconds that took (all ranks: the kernel's page-cache copy and writeback). With
        `writeback`, the same writes also start the device writing every WRITEBACK_BYTES, as our
        shard writer does (the best this baseline offers)."""
        dist.barrier()
        start, cpu = time.perf_counter(), time.thread_time()
        with open(folder / f"sequential-{rank}.bin", "wb", buffering=0) as handle:
            for index in range(state_bytes // CHUNK_BYTES):
                handle.write(chunk)
                written = (index + 1) * CHUNK_BYTES
                if writeback and written % WRITEBACK_BYTES == 0:
                    start_writeback(handle.fileno(), written - WRITEBACK_BYTES, WRITEBACK_BYTES)
            os.fsync(handle.fileno())
        cpu_s = total(time.thread_time() - cpu)
        elapsed = slowest(time.perf_counter() - start)
        (folder / f"sequential-{rank}.bin").unlink()
        return world * (state_bytes // CHUNK_BYTES) * CHUNK_BYTES / elapsed / 1e9, cpu_s

    for _ in range(3):  # warm-up
        train_step()

    def time_lost(save, busy, before_update=lambda: None) -> tuple[float, float]:
        """(blocking s, time lost s) of one save, for every method alike.

        Blocking: the save call plus the wait before the next update. Lost: the save call plus
        the signed excess of every following step until the save's background work is done (at
        least one step) over the median of the PRE_STEPS undisturbed steps just before the save
        (so load that drifts over the run does not bias the excess).
        """
        baseline_s = statistics.median(slowest(train_step()[0]) for _ in range(PRE_STEPS))
        dist.barrier()
        start = time.perf_counter()
        save()
        save_s = slowest(time.perf_counter() - start)
        extra_s, waited_s, steps = 0.0, 0.0, 0
        while steps == 0 or anyone(busy()):
            step_s, waited = train_step(before_update if steps == 0 else lambda: None)
            extra_s += slowest(step_s) - baseline_s
            waited_s = max(waited_s, slowest(waited))
            steps += 1
        baselines.append(baseline_s)
        return save_s + waited_s, save_s + extra_s

    baselines: list[float] = []

    def torch_save_fsync(path: Path) -> None:
        torch.save(local, path)
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())

    measured: dict[str, list[tuple[float, float]]] = {}
    torch_save_cpu_s: list[float] = []

    def torch_save_costed(path: Path) -> None:
        cpu = time.thread_time()
        torch.save(local, path)
        torch_save_cpu_s.append(time.thread_time() - cpu)

    for repeat in range(saves):
        path = folder / f"torch-save-{rank}.pt"
        measured.setdefault("torch_save", []).append(
            time_lost(lambda path=path: torch_save_costed(path), lambda: False)
        )
        measured.setdefault("torch_save_fsync", []).append(
            time_lost(lambda path=path: torch_save_fsync(path), lambda: False)
        )
        torch.serialization.set_crc32_options(False)  # torch.save without its per-record CRC-32
        measured.setdefault("torch_save_no_crc", []).append(
            time_lost(lambda path=path: torch.save(local, path), lambda: False)
        )
        torch.serialization.set_crc32_options(True)
        path.unlink()
        measured.setdefault("dcp_save", []).append(
            time_lost(lambda r=repeat: dcp.save(state, checkpoint_id=folder / f"dcp-{r}"), lambda: False)
        )
        pending: list[Any] = []  # the Future async_save returns
        measured.setdefault("dcp_async_save", []).append(
            time_lost(
                lambda r=repeat, pending=pending: pending.append(
                    dcp.async_save(state, checkpoint_id=folder / f"async-{r}", process_group=async_group)
                ),
                lambda pending=pending: not pending[0].done(),
            )
        )
        pending[0].result()
        dist.barrier()
        if rank == 0:
            for name in (f"dcp-{repeat}", f"async-{repeat}"):
                shutil.rmtree(folder / name)
    for key, values in measured.items():
        results[f"{key}_blocking_s"] = statistics.median(v[0] for v in values)
        results[f"{key}_lost_s"] = statistics.median(v[1] for v in values)

    node, nodes = rank // RANKS_PER_NODE, world // RANKS_PER_NODE
    engine = CheckpointEngine(
        folder / "ours", rank, world, node_id=node, nodes=nodes, agent_dir=agent_dir, keep_last=2
    )
    ours: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    step = 0
    for overlap in [False, True] * (saves + 1):  # the first two saves fault in both memory slots
        step += 1
        blocking_s, lost_s = time_lost(
            lambda step=step, overlap=overlap: engine.save(step, state, overlap=overlap),
            engine.busy,
            engine.wait_for_snapshot,  # the runtime waits here, before the optimizer step
        )
        engine.wait()
        if step > 2:
            ours[overlap].append((blocking_s, lost_s))
    # Persist throughput the way the disk rate is measured, nothing else running in the job, each
    # save between two samples of the disk's own rate (which drifts by several times over a run).
    persist = []
    costs = []  # the background work of each persist save on this rank, by component
    disk = [disk_rate_gb_s()]
    disk_writeback = [disk_rate_gb_s(writeback=True)]
    agents_cpu_before_s = agents_cpu_s() if rank == 0 else 0.0
    for _ in range(PERSIST_SAVES):
        step += 1
        dist.barrier()
        start = time.perf_counter()
        engine.save(step, state)
        engine.wait()
        costs.append(engine.costs())
        persist.append(slowest(costs[-1]["commit"].finished_s - start))  # published on disk
        disk.append(disk_rate_gb_s())
        disk_writeback.append(disk_rate_gb_s(writeback=True))
    if rank == 0:
        results["ours_agents_cpu_s_per_save"] = (agents_cpu_s() - agents_cpu_before_s) / len(costs)
    for component in BACKGROUND:
        for measure in ("cpu_s", "wall_s"):
            mean_s = statistics.mean(getattr(c[component], measure) if component in c else 0.0 for c in costs)
            # CPU seconds add up over ranks (they share the cores); wall: the slowest rank
            results[f"ours_{component}_{measure}_per_save"] = (
                total(mean_s) if measure == "cpu_s" else slowest(mean_s)
            )
    results["torch_save_cpu_s_per_save"] = total(statistics.mean(torch_save_cpu_s))
    for overlap, name in ((False, "ours_in_loop_copy"), (True, "ours_overlapped_copy")):
        results[f"{name}_blocking_s"] = statistics.median(v[0] for v in ours[overlap])
        results[f"{name}_lost_s"] = statistics.median(v[1] for v in ours[overlap])
    # what the runtime's CopyModeChoice does on a CPU: use the mode that lost less time per save
    chosen = min(("ours_in_loop_copy", "ours_overlapped_copy"), key=lambda n: results[f"{n}_lost_s"])
    results["ours_mode"] = chosen
    results["ours_blocking_s"] = results[f"{chosen}_blocking_s"]
    results["ours_lost_s"] = results[f"{chosen}_lost_s"]
    persist_s = statistics.median(persist)
    results["ours_persist_s"] = persist_s
    results["ours_persist_gb_s"] = world * state_bytes / persist_s / 1e9
    results["disk_write_before_gb_s"], results["disk_write_after_gb_s"] = disk[0][0], disk[-1][0]
    results["disk_write_gb_s"] = statistics.median(rate for rate, _ in disk)
    results["disk_write_cpu_s"] = statistics.mean(cpu_s for _, cpu_s in disk)
    results["disk_write_writeback_gb_s"] = statistics.median(rate for rate, _ in disk_writeback)
    results["baseline_step_s"] = statistics.median(baselines)

    for part in state.values():
        for tensor in part.values():
            tensor.to_local().fill_(7.0)
    dist.barrier()
    start = time.perf_counter()
    restored_step = engine.load(state)
    results["recovery_from_memory_s"] = slowest(time.perf_counter() - start)
    results["recovery_tier"] = engine.restored.tier if engine.restored else "none"
    intact = restored_step == step and bool((state["model"]["layers.0.weight"].to_local() == 0).all())
    engine.close()

    memory_engine = CheckpointEngine(
        folder / "memory-only", rank, world, node_id=node, nodes=nodes, agent_dir=agent_dir, disk_every=10**9
    )
    rss = []
    for save_step in range(step + 1, step + rss_saves + 1):  # newer steps, so both slots take turns
        memory_engine.save(save_step, state)
        memory_engine.wait()
        rss.append(_rss_bytes())
    # A save to the memory tiers only (disk every k-th save, as Gemini does): what most saves cost.
    for overlap, name in (
        (False, "ours_memory_only_in_loop_copy"),
        (True, "ours_memory_only_overlapped_copy"),
    ):
        save_step += 1
        blocking_s, lost_s = time_lost(
            lambda save_step=save_step, overlap=overlap: memory_engine.save(
                save_step, state, overlap=overlap
            ),
            memory_engine.busy,
            memory_engine.wait_for_snapshot,
        )
        memory_engine.wait()
        results[f"{name}_blocking_s"], results[f"{name}_lost_s"] = blocking_s, lost_s
    memory_engine.close()
    settled = min(2, len(rss) - 1)  # both slots of each tier mapped and faulted in
    results["rss_growth_mb"] = slowest((rss[-1] - rss[settled]) / 2**20)
    results["rss_mb"] = slowest(rss[-1] / 2**20)
    if rank == 0:
        results.update(
            state_gb=world * state_bytes / 1e9, ranks=world, saves=saves, rss_saves=rss_saves, intact=intact
        )
        (out / "results.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _kill_worker(out: Path) -> None:
    """A job that saves every step (overlapped copy) until killed; after a restart it reports and exits."""
    import torch
    import torch.distributed as dist

    from suanli.ft.checkpoint.agent import AGENT_DIR_ENV
    from suanli.ft.checkpoint.engine import CheckpointEngine

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    weights = torch.zeros(KILL_STATE_BYTES // 4 // world)
    state = {"model": {"w": weights}, "step": 0}
    engine = CheckpointEngine(
        out / "kill-ckpt",
        rank,
        world,
        node_id=rank // RANKS_PER_NODE,
        nodes=world // RANKS_PER_NODE,
        agent_dir=Path(os.environ[AGENT_DIR_ENV]),
        disk_every=10**9,
    )
    if attempt > 0:
        restored = engine.load(state)
        if rank == 0:
            tier = engine.restored.tier if engine.restored else "none"
            (out / "restored.json").write_text(json.dumps({"step": restored, "tier": tier}))
        engine.close()
        dist.destroy_process_group()
        return
    (out / f"pid-{rank}").write_text(str(os.getpid()))
    a = torch.randn(MATMUL, MATMUL)
    with open(out / f"progress-{rank}", "a") as progress:
        for step in range(1, KILL_STEPS + 1):
            for _ in range(6):
                torch.mm(a, a)
            engine.wait_for_snapshot()
            weights.fill_(step)  # the "optimizer step": the state now is step `step`'s
            state["step"] = step
            dist.barrier()
            progress.write(f"{step}\n")
            progress.flush()
            engine.save(step, state, overlap=True)
    engine.close()
    dist.destroy_process_group()


def _steps_lost_after_kill(out: Path, ranks: int, seed: int) -> dict:
    rng = random.Random(seed)
    agent_dir = out / "kill-agents"
    job = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from suanli.ft.checkpoint.launcher import launch; "
            f"sys.exit(launch({__file__!r}, ['--kill-worker', {str(out)!r}], {ranks}, max_restarts=1, "
            f"agent_dir={str(agent_dir)!r}, agent_nodes={ranks // RANKS_PER_NODE}))",
        ],
        stderr=subprocess.DEVNULL,
    )
    victim = rng.randrange(ranks)
    progress = out / f"progress-{victim}"
    deadline = time.monotonic() + 60
    while not (progress.exists() and len(progress.read_text().split()) >= 5):
        if time.monotonic() > deadline or job.poll() is not None:
            raise RuntimeError("the kill job did not start stepping")
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.0))
    os.kill(int((out / f"pid-{victim}").read_text()), signal.SIGKILL)
    time.sleep(0.5)  # a rank past the last barrier may still be writing its progress line
    completed = max(int(p.read_text().split()[-1]) for p in out.glob("progress-*") if p.read_text().split())
    if job.wait(timeout=120) != 0:
        raise RuntimeError(f"the kill job failed to recover (exit {job.returncode})")
    restored = json.loads((out / "restored.json").read_text())
    return {
        "steps_lost_after_kill": completed - restored["step"],
        "kill_completed_step": completed,
        "kill_restored_step": restored["step"],
        "kill_restored_tier": restored["tier"],
        "kill_victim_rank": victim,
        "kill_seed": seed,
    }


def _machine() -> str:
    cores = os.cpu_count()
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.machine()}, {cores} cores, {memory_gb:.0f} GiB RAM, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 MB state, fewer repeats (about a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--total-gb", type=float, default=None)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--saves", type=int, default=None, help="measured saves per method")
    parser.add_argument("--rss-saves", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="for the kill's victim and moment")
    parser.add_argument(
        "--host-idle",
        action="store_true",
        help="emulate an accelerator step (the host sleeps) instead of a CPU-bound one (matmuls)",
    )
    parser.add_argument("--folder", type=Path, default=None, help="where checkpoints go (default: temp)")
    args = parser.parse_args()
    total_gb = args.total_gb if args.total_gb is not None else (0.512 if args.quick else 2.0)
    saves = args.saves or (3 if args.quick else 5)
    rss_saves = args.rss_saves or (12 if args.quick else 100)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)

    from suanli.ft.checkpoint.launcher import launch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(tempfile.mkdtemp(prefix="suanli-ckpt-bench-", dir=args.folder))
    started = time.perf_counter()
    try:
        worker_args = [
            "--measure-worker",
            str(out),
            str(int(total_gb * 1e9)),
            str(saves),
            str(rss_saves),
            str(int(args.host_idle)),
        ]
        nodes = args.ranks // RANKS_PER_NODE
        code = launch(__file__, worker_args, args.ranks, agent_dir=out / "agents", agent_nodes=nodes)
        if code != 0:
            sys.exit(f"error: benchmark workers failed with exit code {code}")
        results = json.loads((out / "results.json").read_text())
        results.update(_steps_lost_after_kill(out, args.ranks, seed))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    background_cpu_s = results["ours_agents_cpu_s_per_save"] + sum(
        results[f"ours_{component}_cpu_s_per_save"] for component in BACKGROUND
    )
    summary = {
        "time_lost_per_save_vs_torch_save": results["ours_lost_s"] / results["torch_save_lost_s"],
        "stall_ratio_vs_torch_save": results["ours_blocking_s"] / results["torch_save_blocking_s"],
        "stall_ratio_vs_dcp_async_save": results["ours_blocking_s"] / results["dcp_async_save_blocking_s"],
        "persist_ratio_vs_disk": results["ours_persist_gb_s"] / results["disk_write_gb_s"],
        "persist_ratio_vs_disk_with_writeback": results["ours_persist_gb_s"]
        / results["disk_write_writeback_gb_s"],
        "recovery_from_memory_s": results["recovery_from_memory_s"],
        "steps_lost_after_kill": results["steps_lost_after_kill"],
        "rss_growth_mb": results["rss_growth_mb"],
        "time_lost_per_save_vs_torch_save_no_crc": results["ours_lost_s"]
        / results["torch_save_no_crc_lost_s"],
        "time_lost_per_save_vs_torch_save_fsync": results["ours_lost_s"] / results["torch_save_fsync_lost_s"],
        "memory_only_time_lost_per_save_vs_torch_save": min(
            results["ours_memory_only_in_loop_copy_lost_s"],
            results["ours_memory_only_overlapped_copy_lost_s"],
        )
        / results["torch_save_lost_s"],
        # Where every core trains, a save costs training at least the CPU time of its background
        # work, and torch.save costs its own: the ratio of the two is the floor of the first figure.
        "cpu_floor_time_lost_vs_torch_save": background_cpu_s / results["torch_save_cpu_s_per_save"],
        "ours_background_cpu_s_per_save": background_cpu_s,
        **results,
        "step": f"emulated accelerator step, host idle {HOST_IDLE_STEP_S} s"
        if args.host_idle
        else "CPU matmuls",
        "wall_s": time.perf_counter() - started,
        "machine": _machine(),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    for key, value in summary.items():
        print(f"{key:44s} {value:.4g}" if isinstance(value, float) else f"{key:44s} {value}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure-worker":
        _measure_worker(
            Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
        )
    elif len(sys.argv) > 1 and sys.argv[1] == "--kill-worker":
        _kill_worker(Path(sys.argv[2]))
    else:
        main()
