"""Goodput accounting: wall time splits into productive time and badput by cause."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.runtime.metrics import BADPUT_CAUSES, goodput, step_time_comparison, utilisation


def step(attempt: int, number: int, time: float, compute_s: float = 1.0, stall_s: float = 0.0) -> dict:
    return {
        "event": "step",
        "attempt": attempt,
        "step": number,
        "time": time,
        "step_time_s": compute_s + stall_s,
        "compute_s": compute_s,
        "data_wait_s": 0.0,
        "checkpoint_stall_s": stall_s,
    }


def test_a_failure_costs_its_restart_and_the_steps_since_the_last_checkpoint() -> None:
    records = [
        {"event": "start", "attempt": 0, "time": 0.0},
        step(0, 1, 2.0),  # startup: 0 -> 1
        step(0, 2, 3.0),
        step(0, 3, 4.5, stall_s=0.5),  # checkpoint at step 3
        step(0, 4, 5.5),  # lost: the next attempt resumes from step 3
        {"event": "start", "attempt": 1, "time": 9.0},
        {"event": "resume", "attempt": 1, "time": 10.0, "restored_step": 3, "tier": "memory"},
        step(1, 4, 11.0),
        step(1, 5, 12.0),
    ]
    summary = goodput(records)
    assert summary.wall_s == 12.0
    assert summary.productive_s == 5.0  # steps 1-3, then 4-5 again
    assert summary.badput_s == {
        "startup": 1.0,
        "checkpoint_stall": 0.5,
        "data_wait": 0.0,
        "restart": 4.5,  # 5.5 (last record before the failure) -> 10.0 (state restored)
        "lost_work": 1.0,
    }
    assert summary.restarts == 1
    assert summary.goodput == pytest.approx(5 / 12)


@given(
    computes=st.lists(st.floats(0.01, 10), min_size=1, max_size=20),
    stalls=st.lists(st.floats(0, 1), min_size=20, max_size=20),
)
def test_without_failures_the_parts_add_up_to_the_wall_time(
    computes: list[float], stalls: list[float]
) -> None:
    records, now = [{"event": "start", "attempt": 0, "time": 0.0}], 0.5
    for number, (compute, stall) in enumerate(zip(computes, stalls, strict=False), start=1):
        now += compute + stall
        records.append(step(0, number, now, compute, stall))
    summary = goodput(records)
    assert summary.productive_s + sum(summary.badput_s.values()) == pytest.approx(summary.wall_s)
    assert set(summary.badput_s) == set(BADPUT_CAUSES)
    assert summary.badput_s["lost_work"] == summary.badput_s["restart"] == 0


def test_utilisation_is_achieved_over_peak() -> None:
    # 1e12 FLOPs per token at 100 tokens/s on a 400 TFLOPS machine: 25 %
    assert utilisation(1e12, 100, 400) == pytest.approx(0.25)


def test_predicted_and_measured_step_times_are_shown_side_by_side() -> None:
    assert step_time_comparison(2.0, 2.5) == "step time: predicted 2 s (planner), measured 2.5 s (+25%)"
    assert "no planner prediction" in step_time_comparison(None, 1.0)
