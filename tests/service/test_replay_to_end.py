"""`suanli up --simulate CLUSTER --trace T --exit-when-done --json`: a trace through the controller,
store and simulated executor on an event clock agrees with `suanli sim` on the same inputs."""

from __future__ import annotations

from suanli.service.executors.base import Placement, Run
from suanli.service.executors.simulated import EventClock, SimulatedExecutor, TrueRun
from suanli.spec import JobSpec
from tests.service.conftest import REPO, SIA, replay_and_sim

ARGS = ["--trace", "sia-saturn", "--workload", "2", "--policy", "suanli", "--limit", "30", "--json"]


def test_the_service_replay_prints_suanli_sims_metrics_within_5_percent(tmp_path):
    service, sim = replay_and_sim(tmp_path, ARGS)
    assert set(service) == set(sim)
    assert service["jobs_finished"] == sim["jobs_finished"] == 30
    assert abs(service["avg_jct_h"] - sim["avg_jct_h"]) <= 0.05 * sim["avg_jct_h"]


def test_a_preempted_simulated_run_keeps_the_work_up_to_its_last_checkpoint():
    """As the simulator's `_lost_progress`: a 10 h run preempted after 1 h 50 min of progress (past a
    20-minute start-up) keeps 1.5 h at 30-minute checkpoints, and its next run lasts start-up + 8.5 h."""
    clock = EventClock()
    executor = SimulatedExecutor(clock, lambda run: TrueRun(36_000.0, 1_200.0, checkpoint_cycle_s=1_800.0))
    spec = JobSpec.model_validate({"name": "j", "run": "x", "resources": {"accelerators": {"V100": 4}}})

    def run(attempt: int) -> Run:
        return Run(7, attempt, spec, Placement("v100", 1, 4, "v100"), REPO, "x")

    executor.submit(run(1))
    assert executor.next_end_s() == 1_200.0 + 36_000.0
    clock.advance_to(1_200.0 + 6_600.0)
    executor.cancel(run(1))
    assert executor.next_end_s() is None
    executor.submit(run(2))
    assert executor.next_end_s() == clock() + 1_200.0 + 36_000.0 - 5_400.0


def _policy_sees(tmp_path, estimate_error: float) -> tuple[set[float], set[float]]:
    """Every float the live policy could read at each pass of a replay through the API (the probe of
    tests/sched/test_knowledge.py on the service's scheduler), and the trace's true run times."""
    import math

    import httpx

    from suanli.sched.policies import POLICIES, Hook
    from suanli.sched.scheduler import Scheduler
    from suanli.service.app import Settings, create_app
    from suanli.service.replay import ReplayToEnd
    from suanli.service.serving import serve_in_thread
    from tests.sched.test_knowledge import _floats_reachable

    base = POLICIES["suanli"]
    seen: set[float] = set()

    def on_round(self, view):
        seen.update(_floats_reachable(view) | _floats_reachable(self))
        base.on_round(self, view)

    spy = type("Spy", (base,), {"hooks": base.hooks | {Hook.ON_ROUND}, "on_round": on_round})
    settings = Settings(
        data_dir=tmp_path / f"sigma{estimate_error}",
        cluster_file=SIA,
        simulate_speedup=math.inf,
        trace="sia-saturn",
        trace_workload="2",
        trace_limit=20,
        estimate_error=estimate_error,
    )
    service = create_app(settings)
    controller = service.state.controller
    controller.scheduler.inner = Scheduler(controller.cluster, spy())
    url, stop = serve_in_thread(service)
    try:
        with httpx.Client(base_url=url) as http:
            assert ReplayToEnd(service, http).run()["jobs_finished"] == 20
    finally:
        stop()
    truth = {r for job in service.state.workload.truth.values() for r in job.runtime_s.values()}
    return seen, truth


def test_the_true_run_times_never_reach_the_live_policy(tmp_path):
    seen, truth = _policy_sees(tmp_path, 0.5)
    assert seen and not seen & truth
    # the same probe finds them when jobs declare exactly what they take, so it can fail
    seen, truth = _policy_sees(tmp_path, 0.0)
    assert seen & truth
