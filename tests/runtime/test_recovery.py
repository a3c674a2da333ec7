"""Self-healing: a rank killed mid-run is restarted by the launcher and resumes from the memory tier.

The data of a step is a pure function of the step and the state is restored exactly, so the
recovered run must reproduce the losses of an uninterrupted one.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from suanli.ft.checkpoint.agent import shm_folder_for
from suanli.ft.checkpoint.engine import CheckpointEngine
from suanli.runtime.checkpointing import RETRY_EVERY, CopyModeChoice, SaveCost
from suanli.runtime.config import load_config
from suanli.runtime.metrics import goodput, read_records
from suanli.runtime.train import ProcessEnv, clear_run, launch, run

CHECKPOINT_EVERY = 3
FAILURE_STEP = 8  # the last checkpoint before it is at step 6, so step 7 is lost work
STEPS = 16


def test_killed_rank_resumes_from_memory_and_matches_an_uninterrupted_run(
    write_config: Callable[..., Path],
) -> None:
    checkpoint = {"folder": "ckpt", "every_steps": CHECKPOINT_EVERY}
    layout = {"dp": 2, "micro_batch": 2, "zero_stage": 3}  # FSDP2: the snapshot holds DTensor shards
    path = write_config("recovered", layout=layout, checkpoint=checkpoint)
    assert launch(path, 2, inject_failure_at_step=FAILURE_STEP, max_restarts=1) == 0
    records = read_records(load_config(path).metrics.path)

    resumes = [r for r in records if r["event"] == "resume"]
    assert [(r["attempt"], r["restored_step"], r["tier"]) for r in resumes] == [(1, 6, "memory")]
    assert resumes[0]["where"] == "memory snapshot of rank 0 at step 6 on node 0"
    final_losses = {r["step"]: r["loss"] for r in records if r["event"] == "step"}
    assert sorted(final_losses) == list(range(1, 17))

    reference = load_config(write_config("reference", layout={"dp": 1, "micro_batch": 4}))
    expected = run(reference, env=ProcessEnv()).losses
    assert [final_losses[step] for step in range(1, 17)] == pytest.approx(expected, rel=1e-4)

    summary = goodput(records)
    assert summary.restarts == 1
    assert summary.badput_s["restart"] > 0
    assert summary.badput_s["lost_work"] > 0
    assert summary.badput_s["checkpoint_stall"] > 0
    assert 0 < summary.goodput < 1


def test_a_new_run_resumes_from_disk_where_the_last_one_stopped(write_config: Callable[..., Path]) -> None:
    checkpoint = {"folder": "ckpt", "every_steps": CHECKPOINT_EVERY}
    layout = {"dp": 1, "micro_batch": 4}
    first = run(
        load_config(write_config("first", steps=6, layout=layout, checkpoint=checkpoint)), env=ProcessEnv()
    )
    assert first.resumed_from_step is None
    longer = load_config(write_config("first", steps=9, layout=layout, checkpoint=checkpoint))
    second = run(longer, env=ProcessEnv())
    assert second.resumed_from_step == 6
    assert len(second.losses) == 3
    resume = next(r for r in read_records(longer.metrics.path) if r["event"] == "resume")
    assert resume["tier"] == "disk"


@pytest.mark.parametrize("mtbf_s", [1e-6, 1e9])
def test_without_a_fixed_interval_saves_follow_daly(write_config: Callable[..., Path], mtbf_s: float) -> None:
    """Daly's interval grows with sqrt(time lost per save x MTBF). Step 1 saves to measure that
    cost, which is known once its background work is done. Then failures every microsecond mean a
    save after every step; one failure in 30 years means only the final one."""
    checkpoint = {"folder": "ckpt", "mtbf_s": mtbf_s}
    config = load_config(
        write_config("daly", steps=STEPS, layout={"dp": 1, "micro_batch": 8}, checkpoint=checkpoint)
    )
    run(config, env=ProcessEnv())
    steps = [r for r in read_records(config.metrics.path) if r["event"] == "step"]
    idle = [r["step"] for r in steps if r["step"] > 1 and not r["checkpoint_in_flight"]]
    assert idle, "the first save was still persisting at the last step; nothing to plan from"
    measured = idle[0]
    expected = set(range(measured, STEPS + 1)) if mtbf_s < 1 else {STEPS}
    assert {r["step"] for r in steps if r["checkpoint_saved"]} == {1} | expected
    lost = [r["checkpoint_stall_s"] for r in steps if r["step"] < measured]
    assert sum(lost) > 0  # the measuring save cost something, and it was counted


def test_fresh_clears_the_checkpoints_so_a_finished_demo_runs_again(
    write_config: Callable[..., Path],
) -> None:
    checkpoint = {"folder": "ckpt", "every_steps": CHECKPOINT_EVERY}
    config = load_config(
        write_config("demo", steps=6, layout={"dp": 1, "micro_batch": 4}, checkpoint=checkpoint)
    )
    assert run(config, env=ProcessEnv()).resumed_from_step is None
    again = run(config, env=ProcessEnv())  # resuming is the default: the finished run has nothing left
    assert again.resumed_from_step == 6 and again.losses == []
    left = shm_folder_for(Path(config.checkpoint.folder) / "agents", 0)  # as a killed launcher leaves it
    left.mkdir()
    removed = clear_run(config)
    assert any(entry.endswith("step-6") for entry in removed) and not left.exists()
    fresh = run(config, env=ProcessEnv())
    assert fresh.resumed_from_step is None and len(fresh.losses) == 6


def test_a_deterministic_error_stops_the_job_once_without_retries(
    write_config: Callable[..., Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of another model fails the same way on every attempt: one line, exit 2, no retry."""
    path = write_config("other", layout={"dp": 2, "micro_batch": 2}, checkpoint={"folder": "ckpt"})
    engine = CheckpointEngine(load_config(path).checkpoint.folder)
    engine.save(5, {"weights": torch.zeros(4)})
    engine.close()
    assert launch(path, 2, max_restarts=3) == 2
    output = capfd.readouterr()
    errors = [line for line in (output.out + output.err).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "step-5/.metadata" in errors[0] and "another model" in errors[0]
    assert "attempt 1" not in output.err and "not restarting" in output.err


def test_on_a_cpu_the_copy_mode_follows_the_measured_time_lost() -> None:
    choice = CopyModeChoice(always_overlap=False)
    assert choice.next() is False  # each mode is tried once, its cost known before the next save
    choice.record(SaveCost(step=1, overlap=False, blocking_s=0.5, slowdown_s=0.1))
    assert choice.next() is True
    choice.record(SaveCost(step=2, overlap=True, blocking_s=0.01, slowdown_s=0.3))
    picks = [choice.next() for _ in range(3, RETRY_EVERY + 3)]
    assert picks.count(True) == RETRY_EVERY - 1 and picks.count(False) == 1  # the loser is retried
    choice.record(SaveCost(step=9, overlap=False, blocking_s=0.0, slowdown_s=0.0))
    choice.record(SaveCost(step=10, overlap=False, blocking_s=0.0, slowdown_s=0.0))
    assert choice.next() is False  # load changed: the in-loop copy is now the cheaper one
    assert CopyModeChoice(always_overlap=True).next() is True  # a device copies on its own engine
