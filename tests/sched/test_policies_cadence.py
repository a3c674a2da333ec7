"""When policies decide: the fairness guard keeps its own deadlines, FTF preempts only at its rounds,
and a job that declares nothing is served first come first served inside its Tiresias queue."""

from __future__ import annotations

import pytest

from suanli.sched.policies import Hook, make_policy
from suanli.sched.policies.suanli import SuanliPolicy
from suanli.sched.scheduler import Scheduler
from suanli.sched.simulator import SimConfig, simulate
from tests.sched.conftest import job, make_cluster

HOUR = 3600.0


def _guard_case() -> list:
    """One GPU holds a 100-hour job; a wide 8-hour gang arrives an hour later. Its area (64 GPU-h)
    is larger than the long job's remaining area over the stickiness (≤ 49.5 GPU-h), so shortest
    work first never preempts for it, and nothing else happens for 99 hours."""
    return [job("long", 0.0, 1, 100 * HOUR), job("wide", HOUR, 8, 8 * HOUR)]


def _start_h(policy: SuanliPolicy, job_id: str) -> float:
    run = simulate(make_cluster({"a": (1, 8)}), policy, _guard_case(), SimConfig(estimate_error=0.0))
    state = next(s for s in run.jobs if s.job.job_id == job_id)
    assert state.first_start_s is not None
    return state.first_start_s / HOUR


def test_the_guard_fires_when_rho_crosses_it_not_at_the_next_event():
    # N = 2 while it waits: a 4-GPU share, so the 8-wide gang's share run time is 2 × 8 h = 16 h and
    # its projected ρ = (wait + 8 h) / 16 h crosses 1.7 after 19.2 h of waiting.
    assert _start_h(SuanliPolicy(rho_guard=1.7), "wide") == pytest.approx(1.0 + 19.2, abs=0.01)
    # Without its own deadlines the policy only looks again when the long job ends.
    deaf = type("Deaf", (SuanliPolicy,), {"hooks": SuanliPolicy.hooks - {Hook.NEXT_PASS}})
    assert _start_h(deaf(), "wide") == pytest.approx(100.0, abs=0.01)


def test_a_ticked_scheduler_keeps_the_guard_deadline_to_within_one_tick():
    sched = Scheduler(make_cluster({"a": (1, 8)}), SuanliPolicy(rho_guard=1.7))
    long, wide = _guard_case()
    sched.submit(long)
    sched.tick(0.0)
    sched.submit(wide)
    sched.tick(HOUR)
    assert sched.wake_s == pytest.approx(HOUR + 19.2 * HOUR + 1.0)
    started = {}
    for minute in range(1, 22 * 60):
        for decision in sched.tick(HOUR + 60.0 * minute):
            started.setdefault(decision.job_id, (decision.action, minute / 60))
    assert started["wide"] == ("start", pytest.approx(19.2, abs=1 / 60))
    assert started["long"][0] == "preempt"


def test_ftf_preempts_only_at_its_round_boundaries_however_it_is_ticked(monkeypatch):
    # Six 4-GPU jobs of 2-5 h on 8 GPUs, arriving between rounds: ρ shifts all the time.
    jobs = [job(f"j{i}", 500.0 * i + 17.0, 4, (2 + i % 4) * HOUR) for i in range(6)]
    preempted_at: list[float] = []
    original = Scheduler._preempt

    def spy(self, state, now_s):
        preempted_at.append(now_s)
        return original(self, state, now_s)

    monkeypatch.setattr(Scheduler, "_preempt", spy)
    simulate(make_cluster({"a": (1, 8)}), make_policy("ftf"), jobs, SimConfig(estimate_error=0.0))
    assert preempted_at, "the workload must make FTF preempt"
    assert all(t % 360.0 == 0.0 for t in preempted_at), preempted_at


def test_jobs_declaring_nothing_are_served_in_arrival_order_not_narrowest_first():
    # Both queue behind a running job; the earlier one is wider. Without declared work a
    # narrowest-first order would let the 1-GPU job jump the 8-GPU gang every time.
    jobs = [job("running", 0.0, 8, HOUR), job("wide", 10.0, 8, 600.0), job("narrow", 20.0, 1, 600.0)]
    run = simulate(
        make_cluster({"a": (1, 8)}), make_policy("suanli"), jobs, SimConfig(runtime_knowledge="none")
    )
    start = {s.job.job_id: s.first_start_s for s in run.jobs}
    assert start["wide"] == pytest.approx(HOUR) and start["narrow"] >= start["wide"] + 600.0


def test_a_running_job_is_stopped_just_after_its_save_not_just_before():
    """SRPT with a cost: a newcomer of 32 GPU-h goes before a running job of 36.4 GPU-h (counted
    at half, `stickiness` 2, as 72.8 / 2) only once stopping it costs less than the difference. At
    0.9 h it would lose 0.9 h × 8 GPUs since its hourly save, so it keeps running; a second after
    its save at 1 h it yields."""
    running = job("running", 0.0, 8, 10 * HOUR, checkpoint_interval_s=HOUR)
    newcomer = job("newcomer", 0.9 * HOUR, 8, 4 * HOUR)
    run = simulate(
        make_cluster({"a": (1, 8)}), SuanliPolicy(), [running, newcomer], SimConfig(estimate_error=0.0)
    )
    states = {s.job.job_id: s for s in run.jobs}
    assert states["newcomer"].first_start_s == pytest.approx(HOUR + 1.0)
    # 14 h of work in all, plus the one second it lost (stopped at 0.9 h it would have lost 0.9 h)
    assert states["running"].finish_s == pytest.approx(14 * HOUR + 1.0)
