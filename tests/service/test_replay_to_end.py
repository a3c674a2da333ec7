"""`suanli up --simulate CLUSTER --trace T --exit-when-done --json`: a trace through the controller,
store and simulated executor on an event clock agrees with `suanli sim` on the same inputs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from suanli.cli import app
from suanli.service.executors.base import Placement, Run
from suanli.service.executors.simulated import EventClock, SimulatedExecutor, TrueRun
from suanli.spec import JobSpec
from tests.service.conftest import REPO

SIA = REPO / "examples" / "clusters" / "sia-64gpu.yaml"
ARGS = ["--trace", "sia-saturn", "--workload", "2", "--policy", "suanli", "--limit", "30", "--json"]


def test_the_service_replay_prints_suanli_sims_metrics_within_5_percent(tmp_path):
    runner = CliRunner()
    live = runner.invoke(
        app, ["up", "--simulate", str(SIA), "--exit-when-done", "--data-dir", str(tmp_path), *ARGS]
    )
    assert live.exit_code == 0, live.output
    simulated = runner.invoke(app, ["sim", "--cluster", str(SIA), *ARGS])
    assert simulated.exit_code == 0, simulated.output
    service, sim = json.loads(live.stdout), json.loads(simulated.stdout)
    assert set(service) == set(sim)
    assert service["jobs_finished"] == sim["jobs_finished"] == 30
    assert abs(service["avg_jct_h"] - sim["avg_jct_h"]) <= 0.05 * sim["avg_jct_h"]


def test_a_preempted_simulated_run_keeps_the_work_up_to_its_last_checkpoint():
    """As the simulator's `_lost_progress`: a 10 h run preempted after 1 h 50 min of progress (past a
    20-minute start-up) keeps 1.5 h at 30-minute checkpoints, and its next run lasts start-up + 8.5 h."""
    clock = EventClock()
    executor = SimulatedExecutor(clock, lambda run: TrueRun(36_000.0, 1_200.0), checkpoint_interval_s=1_800.0)
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
