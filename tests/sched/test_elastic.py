"""Elastic jobs: Pollux's goodput fitted to Sia's profiles, resizes that pay their restore time, and
Sia's objective as a policy that never reads a duration."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from suanli.cli import app as cli
from suanli.sched.cluster_state import ClusterState
from suanli.sched.goodput import ACCEL_SUFFIX, advance, app_goodput, efficiency, seconds_to, step_time_s
from suanli.sched.job import Elastic, JobState, SchedJob
from suanli.sched.policies import Hook, Policy, View, make_policy
from suanli.sched.policies.elastic import ElasticGoodput, restart_factor, sia_widths
from suanli.sched.scheduler import Scheduler
from suanli.sched.simulator import SimConfig, simulate
from suanli.sched.traces.sia import APPS, load_sia_workload, workload_path
from suanli.spec import Cluster, load
from tests.sched.conftest import make_cluster
from tests.sched.test_knowledge import _floats_reachable

SIA_CLUSTER = "examples/clusters/sia-64gpu.yaml"
A100 = "a100-sxm-40gb"


def _sia_cluster() -> ClusterState:
    return ClusterState.from_cluster(load(Cluster, SIA_CLUSTER))


def test_fitted_step_time_reproduces_the_measured_profile_rows():
    # Pollux's model fitted per (app, GPU type) to every placements/scalability row of Sia's
    # profiles. yolov3 is the worst: its compute time grows with the replicas (data loading), which
    # Pollux's model has no term for (measured median 24 % on A100).
    errors = {}
    for app in APPS:
        for accel in ACCEL_SUFFIX:
            fit = app_goodput(app, accel)
            nodes, replicas, bsz, _, step_s = fit.profile_rows()
            errors[app, accel] = np.abs(step_time_s(fit.model, nodes, replicas, bsz) / step_s - 1)
    pooled = np.concatenate(list(errors.values()))
    assert np.median(pooled) <= 0.08
    assert all(np.median(e) <= 0.25 for e in errors.values()), {k: np.median(e) for k, e in errors.items()}
    assert sum(np.median(e) <= 0.10 for e in errors.values()) >= 16


@given(
    sqr=st.floats(1e-6, 1e3),
    var=st.floats(0.0, 1e4),
    more_var=st.floats(0.0, 1e4),
    scale=st.floats(1.0, 1e3),
)
def test_efficiency_is_at_most_one_and_grows_with_the_gradient_noise(sqr, var, more_var, scale):
    # Pollux eq. 6: E = (φ + M0) / (φ + M), φ the gradient noise scale (McCandlish et al.).
    e = efficiency(sqr, var, 64 * scale, 64)
    assert 0 < e <= 1 + 1e-12
    assert efficiency(sqr, var, 64, 64) == pytest.approx(1.0)
    assert efficiency(sqr, var + more_var, 64 * scale, 64) >= e - 1e-12


@pytest.mark.parametrize("app", ["cifar10", "imagenet", "deepspeech2", "yolov3"])
def test_jobs_pick_larger_batches_and_gain_goodput_as_training_progresses(app):
    # The noise scale grows during training, so a larger batch becomes efficient (Pollux §2.2).
    fit = app_goodput(app, A100)
    first, last = fit.choose_batch(1, 8, 0), fit.choose_batch(1, 8, fit.max_epochs - 1)
    assert first and last and last.per_replica > first.per_replica
    assert fit.predicted_goodput(8, fit.max_epochs - 1) > 2 * fit.predicted_goodput(8, 0)


def test_progress_and_time_to_finish_are_inverse_across_epochs():
    job = load_sia_workload(workload_path("philly", 1), elastic=True)[0]
    assert job.elastic is not None
    for placement in [(1,), (4,), (8, 8)]:
        seconds = seconds_to(job, A100, placement, 0.1, 0.9)
        assert advance(job, A100, placement, 0.1, seconds) == pytest.approx(0.9, rel=1e-9)
    assert seconds_to(job, A100, (8,), 0.0, 1.0) < seconds_to(job, A100, (1,), 0.0, 1.0)


def test_sia_configurations_and_restart_factor():
    assert sia_widths(24, 4) == [1, 2, 4, 8, 12, 16, 20, 24]
    assert sia_widths(16, 8) == [1, 2, 4, 8, 16]
    assert restart_factor(100.0, 0, 250.0) == 1.0  # too young to have restarted
    assert restart_factor(10_000.0, 3, 250.0) == pytest.approx((10_000 - 750) / 10_250)


class _Scripted(Policy):
    """Allocates what a script says for the current round."""

    name = "scripted"
    hooks = frozenset({Hook.ALLOCATE})
    preemptive = True
    moves_running = True
    round_s = 60.0
    tick_on_events = False

    def __init__(self, script: dict[float, dict[str, tuple[str, int]]]) -> None:
        self.script = script

    def order(self, view: View) -> list:
        return view.active()

    def allocate(self, view: View) -> dict[str, tuple[str, int]]:
        return self.script[view.now_s]


def _elastic_job(restore_s: float = 250.0) -> SchedJob:
    steps = app_goodput("imagenet", A100).total_steps
    return SchedJob(
        "j",
        0.0,
        2,
        {A100: 3600.0},
        gpus_max=8,
        restart_overhead_s=restore_s,
        app="imagenet",
        elastic=Elastic("imagenet", steps),
    )


def test_a_resize_restarts_the_job_on_its_new_width_and_charges_its_restore_time():
    scheduler = Scheduler(
        make_cluster({A100: (1, 8)}), _Scripted({0.0: {"j": (A100, 2)}, 600.0: {"j": (A100, 8)}})
    )
    scheduler.submit(_elastic_job())
    assert [d.action for d in scheduler.tick(0.0)] == ["start"]
    state = scheduler.jobs["j"]
    assert state.busy_from_s == 250.0  # the first start restores too (Sia's rescale time)
    scheduler.snapshot(600.0)
    before = state.progress
    resize = scheduler.tick(600.0)
    assert [(d.action, d.accel_type, len(d.slots)) for d in resize] == [("resize", A100, 8)]
    assert state.job.gpus == 8 and state.starts == 2 and state.preemptions == 0
    assert state.busy_from_s == 850.0
    scheduler.snapshot(850.0)
    assert state.progress == before  # no work while it restores
    scheduler.snapshot(1450.0)
    assert state.progress == pytest.approx(advance(state.job, A100, (8,), before, 600.0))
    assert advance(state.job, A100, (8,), 0.0, 600.0) > 2 * advance(state.job, A100, (2,), 0.0, 600.0)


def test_a_job_cannot_be_shaped_outside_its_bounds():
    job = _elastic_job()
    assert job.at_width(8).gpus == 8
    with pytest.raises(Exception, match="cannot run on 9 GPUs"):
        job.at_width(9)
    with pytest.raises(Exception, match="not elastic"):
        SchedJob("r", 0.0, 2, {A100: 10.0}).at_width(2)


class _Recording(ElasticGoodput):
    def __init__(self) -> None:
        super().__init__()
        self.widths: list[tuple[SchedJob, str, int]] = []

    def allocate(self, view: View) -> dict[str, tuple[str, int]]:
        chosen = super().allocate(view)
        self.widths += [(view.jobs[j].job, t, w) for j, (t, w) in chosen.items()]
        return chosen


def test_the_policy_keeps_every_elastic_job_within_its_bounds_and_the_pools():
    jobs = load_sia_workload(workload_path("saturn", 2), elastic=True)[:20]
    policy = _Recording()
    result = simulate(_sia_cluster(), policy, jobs, SimConfig())
    assert result.metrics["jobs_finished"] == 20
    capacity = _sia_cluster().capacity
    assert {w for *_, w in policy.widths} - {1, 2} != set()  # it does widen jobs
    for job, accel, width in policy.widths:
        assert job.elastic is not None
        cap = min(job.gpus_max or 0, app_goodput(job.elastic.app, accel).max_replicas(), capacity[accel])
        assert job.elastic.min_gpus <= width <= cap
        assert job.app != "ncf" or width == 1


def test_the_elastic_policy_cannot_reach_a_true_duration_or_true_work():
    jobs = load_sia_workload(workload_path("philly", 2), elastic=True)[:25]
    truth = {r for j in jobs for r in j.runtime_s.values()} | {
        j.elastic.unit_steps for j in jobs if j.elastic
    }

    class Spy(ElasticGoodput):
        seen: ClassVar[list[set[float]]] = []

        def allocate(self, view: View) -> dict[str, tuple[str, int]]:
            self.seen.append(_floats_reachable(view) | _floats_reachable(self))
            return super().allocate(view)

    simulate(_sia_cluster(), Spy(), jobs, SimConfig(estimate_error=0.5))
    assert Spy.seen and not set().union(*Spy.seen) & truth
    Spy.seen = []  # the same probe finds them when the declarations are exact, so it can fail
    simulate(_sia_cluster(), Spy(), jobs, SimConfig(estimate_error=0.0))
    assert set().union(*Spy.seen) & truth


def test_on_an_underloaded_cluster_elastic_jobs_finish_sooner_than_rigid_ones():
    # The first 12 jobs of philly 1 (a few GPUs busy at a time): widening idle GPUs into running
    # jobs and growing their batch as they train beats running each at its requested width.
    path = workload_path("philly", 1)
    elastic = simulate(_sia_cluster(), make_policy("elastic"), load_sia_workload(path, elastic=True)[:12])
    rigid = {
        name: simulate(_sia_cluster(), make_policy(name), load_sia_workload(path)[:12]).metrics["avg_jct_h"]
        for name in ("suanli", "gavel")
    }
    assert elastic.metrics["jobs_finished"] == 12
    assert elastic.metrics["avg_jct_h"] < 0.8 * min(rigid.values()), (elastic.metrics["avg_jct_h"], rigid)


def test_cli_runs_sia_workloads_elastic_and_refuses_other_traces():
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "sim",
            "--trace",
            "sia-philly",
            "--workload",
            "1",
            "--policy",
            "elastic",
            "--elastic",
            "--limit",
            "5",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.output)
    assert metrics["elastic"] is True and metrics["jobs_finished"] == 5
    bad = runner.invoke(cli, ["sim", "--trace", "philly", "--elastic", "--limit", "5"])
    assert bad.exit_code != 0
    assert "--elastic: only the Sia traces" in bad.output and "Traceback" not in bad.output


def _random_round(rng: np.random.Generator, jobs: int) -> tuple[float, float]:
    """(greedy objective, integer optimum) of one random round: Sia-shaped values λ − G^p with
    G growing as width^α per job, on two pools of different node sizes."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    cluster = make_cluster({"a": (2, 8), "b": (3, 4)})
    policy, view = ElasticGoodput(), View(0.0, {}, cluster)
    configs = policy._configs(view)
    speed = {t: rng.uniform(0.5, 3.0) for t in ("a", "b")}
    rows = []
    for _ in range(jobs):
        alpha = rng.uniform(0.2, 1.0)
        goodput = np.array([speed[t] * rng.uniform(0.8, 1.2) * w**alpha for t, w in configs])
        rows.append(1.1 - (goodput / goodput.min()) ** -0.5)
    values = np.array(rows)
    states = [JobState(SchedJob(f"j{j}", 0.0, 1, {"a": 1.0, "b": 1.0})) for j in range(jobs)]
    chosen = policy._ascend(states, configs, values, view)
    greedy = sum(values[j, c] for j, c in enumerate(chosen) if c >= 0)
    n_jobs, n_configs = values.shape
    one_each = np.kron(np.eye(n_jobs), np.ones(n_configs))
    types = sorted(view.capacity)
    per_type = np.array([[w * (t == u) for t, w in configs] for u in types])
    gpus = np.tile(per_type, (1, n_jobs))
    exact = milp(
        -values.ravel(),
        constraints=[
            LinearConstraint(one_each, 0, 1),
            LinearConstraint(gpus, 0, [view.capacity[t] for t in types]),
        ],
        integrality=np.ones(values.size),
        bounds=Bounds(0, 1),
    )
    return greedy, -exact.fun


def test_the_greedy_ascent_comes_close_to_sias_integer_optimum():
    # Sia solves the round as an integer program; the greedy reached 93 % of its optimum at worst
    # and 98 % in the median over these seeded rounds (2–40 jobs, 28 GPUs in two pools).
    rng = np.random.default_rng(0)
    ratios = [
        greedy / best for greedy, best in (_random_round(rng, int(rng.integers(2, 40))) for _ in range(40))
    ]
    assert min(ratios) >= 0.9 and np.median(ratios) >= 0.97
    assert max(ratios) <= 1 + 1e-9


@pytest.mark.timeout(60)
def test_rigid_jobs_of_widths_off_sias_ladder_run_under_the_elastic_policy():
    # Sia's ladder on 8-GPU nodes is 1, 2, 4, 8, 16: a rigid gang of 3, 5 or 6 GPUs still gets its
    # own configuration (it used to wait forever while rounds kept coming).
    from tests.sched.conftest import job

    jobs = [job(f"r{w}", 10.0 * w, w, {"a": 600.0, "b": 1200.0}) for w in (3, 5, 6, 1)]
    result = simulate(make_cluster({"a": (1, 8), "b": (1, 8)}), make_policy("elastic"), jobs)
    assert result.metrics["jobs_finished"] == 4
    assert all(s.starts >= 1 and s.job.gpus == s.job.width for s in result.jobs)
