"""Self-healing: a rank killed mid-run is restarted by torchrun and resumes from the memory tier.

The data of a step is a pure function of the step and the state is restored exactly, so the
recovered run must reproduce the losses of an uninterrupted one.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from suanli.runtime.config import load_config
from suanli.runtime.metrics import goodput, read_records
from suanli.runtime.train import ProcessEnv, launch, run
from tests.runtime.conftest import torchrun_port_race

CHECKPOINT_EVERY = 3
FAILURE_STEP = 8  # the last checkpoint before it is at step 6, so step 7 is lost work


@torchrun_port_race
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


@pytest.mark.parametrize(("mtbf_s", "expected_saves"), [(1e-6, set(range(1, 9))), (1e9, {1, 8})])
def test_without_a_fixed_interval_saves_follow_daly(
    write_config: Callable[..., Path], mtbf_s: float, expected_saves: set[int]
) -> None:
    """Daly's interval grows with sqrt(stall x MTBF): failures every microsecond mean a save after
    every step; one failure in 30 years means only the measuring save (step 1) and the final one."""
    checkpoint = {"folder": "ckpt", "mtbf_s": mtbf_s}
    config = load_config(
        write_config("daly", steps=8, layout={"dp": 1, "micro_batch": 8}, checkpoint=checkpoint)
    )
    run(config, env=ProcessEnv())
    steps = [r for r in read_records(config.metrics.path) if r["event"] == "step"]
    assert {r["step"] for r in steps if r["checkpoint_stall_s"] > 0} == expected_saves
