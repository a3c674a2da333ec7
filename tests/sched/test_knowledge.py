"""What a policy knows: never the true duration; the estimator's rules; cadence and livelock."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.sched.estimate import HistoryEstimator, declare
from suanli.sched.job import JobState
from suanli.sched.policies import POLICIES, Hook, Policy, View, make_policy
from suanli.sched.simulator import LivelockError, SimConfig, simulate
from suanli.spec.errors import SpecError
from tests.sched.conftest import job, make_cluster


def _workload(seed: int, n: int = 40) -> list:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        run_s = math.exp(rng.uniform(math.log(300), math.log(30_000)))
        jobs.append(
            job(
                f"j{i}",
                rng.uniform(0, 20_000),
                rng.choice([1, 2, 4, 8]),
                {"a": run_s, "b": 2.2 * run_s},
                app=rng.choice(["x", "y"]),
            )
        )
    return jobs


# Service measured so far: a live system has it, and it equals the truth at the instant a job ends.
MEASURED = {"run_s", "attained_gpu_s"}


def _floats_reachable(root: object) -> set[float]:
    """Every float reachable from `root` through attributes, dataclass fields and containers, but
    the service measured so far."""
    seen: set[int] = set()
    found: set[float] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, float):
            found.add(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(v for k, v in vars(obj).items() if k not in MEASURED)
        elif dataclasses.is_dataclass(obj):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
    return found


def _spy(name: str) -> tuple[type[Policy], list[set[float]]]:
    """The policy with an `on_round` that records every float it could read from its view."""
    cls = POLICIES[name]
    seen: list[set[float]] = []

    def on_round(self: Policy, view: View) -> None:
        seen.append(_floats_reachable(view) | _floats_reachable(self))
        if Hook.ON_ROUND in cls.hooks:
            cls.on_round(self, view)

    return type(
        f"Spy{cls.__name__}", (cls,), {"hooks": cls.hooks | {Hook.ON_ROUND}, "on_round": on_round}
    ), seen


def _true_durations(jobs: list) -> set[float]:
    return {r for j in jobs for r in j.runtime_s.values()}


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_no_policy_can_reach_a_true_duration(policy):
    jobs = _workload(1, n=25)
    cluster = {"a": (2, 8), "b": (2, 8)}
    spy, seen = _spy(policy)
    simulate(make_cluster(cluster), spy(), jobs, SimConfig(estimate_error=0.5))
    assert seen and not set().union(*seen) & _true_durations(jobs)
    # The same probe finds them when the declarations are exact, so it can fail.
    spy, seen = _spy(policy)
    simulate(make_cluster(cluster), spy(), jobs, SimConfig(estimate_error=0.0))
    assert set().union(*seen) & _true_durations(jobs)


def test_without_knowledge_two_workloads_differing_only_in_true_durations_look_the_same():
    short = [job("x", 0.0, 2, {"a": 100.0, "b": 250.0}), job("y", 5.0, 1, {"a": 40.0})]
    long = [job("x", 0.0, 2, {"a": 9_000.0, "b": 22_500.0}), job("y", 5.0, 1, {"a": 7_777.0})]
    seen_short, _ = declare(short, 0.5, "none", seed=3)
    seen_long, work_long = declare(long, 0.5, "none", seed=3)
    assert seen_short == seen_long and all(not j.declared for j in seen_short)
    assert work_long == {"x": 9_000.0, "y": 7_777.0}  # the truth stays with the executor


def test_declared_work_is_the_truth_times_a_seeded_unbiased_lognormal_error():
    jobs = [job(f"j{i}", 0.0, 1, {"a": 1000.0 + i}) for i in range(4000)]
    seen, work = declare(jobs, 0.5, "declared", seed=11)
    log_error = np.log([s.runtime_s["a"] / j.runtime_s["a"] for s, j in zip(seen, jobs, strict=True)])
    assert abs(log_error.mean()) < 0.03 and log_error.std() == pytest.approx(0.5, rel=0.05)
    assert all(
        w * s.runtime_s["a"] == pytest.approx(j.runtime_s["a"])
        for s, j, w in zip(seen, jobs, work.values(), strict=True)
    )
    assert declare(jobs, 0.5, "declared", seed=11) == (seen, work)


def test_hpc_walltime_is_corrected_by_what_the_queues_past_jobs_used():
    """Tsafrir et al. (TPDS 2007): users ask for far more time than they use; the queue's history
    predicts better. Jobs that used 30 % of their limit make the next one's estimate 30 %."""
    estimator = HistoryEstimator()
    for i in range(5):
        done = JobState(job=job(f"h{i}", 0.0, 0, {"cpu": 3600.0}, kind="hpc", cpu_nodes=1, queue="q"))
        done.progress = 0.3
        estimator.observe(done)
    fresh = JobState(job=job("new", 0.0, 0, {"cpu": 7200.0}, kind="hpc", cpu_nodes=1, queue="q"))
    other = JobState(job=job("other", 0.0, 0, {"cpu": 7200.0}, kind="hpc", cpu_nodes=1, queue="r"))
    assert estimator.remaining_s(fresh, "cpu") == pytest.approx(0.3 * 7200.0)
    assert estimator.remaining_s(other, "cpu") == pytest.approx(7200.0)
    fresh.progress = 0.5  # ran past its expected total: a quarter of what it did is left
    assert estimator.remaining_s(fresh, "cpu") == pytest.approx(0.25 * 0.5 * 7200.0)


def _history(estimator: HistoryEstimator, gpu_s: list[float], errors: list[float]) -> None:
    """Finished jobs of application "app" (1 GPU) that used `gpu_s` and declared `gpu_s × error`."""
    for i, (used_s, error) in enumerate(zip(gpu_s, errors, strict=True)):
        done = JobState(job=job(f"h{i}", 0.0, 1, {"a": used_s * error}, app="app"))
        done.progress = 1 / error
        estimator.observe(done)


def test_a_declaration_far_from_its_applications_past_jobs_is_pulled_to_them_as_far_as_they_agree():
    """A normal-normal posterior in log space (3Sigma's idea: similar past jobs predict the next):
    declarations that err ×/÷ 2 while the application's jobs all used 1000 GPU-s make a job declaring
    3000 s expected to take about 1000 s; where the application's jobs vary ×/÷ 8 and declarations
    err 5 %, the same declaration is believed; an application with no finished job is taken at its
    word."""
    tight = HistoryEstimator()
    _history(tight, [1000.0] * 9, [0.5, 1.0, 2.0] * 3)
    over = JobState(job=job("new", 0.0, 1, {"a": 3000.0}, app="app"))
    assert tight.remaining_s(over, "a") == pytest.approx(1000.0, rel=0.1)
    loose = HistoryEstimator()
    _history(loose, [125.0, 1000.0, 8000.0] * 3, [0.95, 1.0, 1.05] * 3)
    assert loose.remaining_s(over, "a") == pytest.approx(3000.0, rel=0.1)
    stranger = JobState(job=job("other", 0.0, 1, {"a": 3000.0}, app="unseen"))
    assert tight.remaining_s(stranger, "a") == 3000.0
    over.progress = 0.5  # ran half its declaration, past the expected total: a quarter of it is left
    assert tight.remaining_s(over, "a") == pytest.approx(0.25 * 0.5 * 3000.0)


def test_a_job_declaring_nothing_is_expected_to_reach_the_next_rung_of_attained_service():
    estimator = HistoryEstimator(class_base_s=3600.0, class_factor=4.0)
    state = JobState(job=job("n", 0.0, 1, {"a": 1.0, "b": 2.0}, declared=False))
    assert estimator.remaining_s(state, "a") == 3600.0
    state.progress = 5000.0  # seconds of work on its fastest type: past the first rung (1 h)
    assert estimator.remaining_s(state, "b") == 2 * (4 * 3600.0 - 5000.0)
    assert HistoryEstimator().remaining_s(state, "a") == 16 * 3600.0 - 5000.0  # defaults: 1 h, 16 h, ...


def test_the_policy_runs_the_same_at_any_tick_without_restart_storms():
    jobs = _workload(5, n=60)
    results = {
        tick: simulate(
            make_cluster({"a": (2, 8), "b": (2, 8)}), make_policy("suanli"), jobs, SimConfig(tick_s=tick)
        )
        for tick in (0.0, 10.0, 60.0)
    }
    jct = {tick: r.metrics["avg_jct_h"] for tick, r in results.items()}
    assert max(jct.values()) <= 1.10 * min(jct.values()), jct
    assert all(r.metrics["restarts_per_job"] < 2.0 for r in results.values())  # a storm is tens per job


class _NeverStarts(Policy):
    name = "never"

    def order(self, view: View) -> list[JobState]:
        return []


class _Flipper(Policy):
    """Preemptive, in 10 s rounds; reverses its order on every pass, so the two jobs swap places
    every round."""

    name = "flipper"
    preemptive = True
    round_s = 10.0

    def __init__(self) -> None:
        self.passes = 0

    def order(self, view: View) -> list[JobState]:
        self.passes += 1
        ranked = sorted(view.active(), key=lambda s: s.job.job_id)
        return ranked[::-1] if self.passes % 2 else ranked


def test_a_livelock_is_an_error_naming_the_policy_and_the_time():
    jobs = [job("a", 0.0, 8, 5000.0), job("b", 0.0, 8, 5000.0)]
    with pytest.raises(LivelockError, match=r"policy never: livelock at t=0 s: 2 job\(s\)"):
        simulate(make_cluster({"a": (1, 8)}), _NeverStarts(), jobs)
    config = SimConfig(max_starts_per_job=50)
    with pytest.raises(
        LivelockError, match=r"policy flipper: livelock at t=\d+ s: job [ab] started 50 times"
    ):
        simulate(make_cluster({"a": (1, 8)}), _Flipper(), jobs, config)


def test_cli_echoes_what_the_policy_knew_and_refuses_bad_flags():
    runner = CliRunner()
    base = ["sim", "--trace", "sia-saturn", "--workload", "1", "--limit", "12", "--json"]
    out = runner.invoke(
        app, [*base, "--estimate-error", "0.25", "--runtime-knowledge", "none", "--tick", "10"]
    )
    assert out.exit_code == 0, out.output
    echoed = json.loads(out.output)
    assert (echoed["estimate_error"], echoed["runtime_knowledge"], echoed["tick_s"]) == (0.25, "none", 10.0)
    for flag, value, message in (
        ("--estimate-error", "-0.1", "--estimate-error: must be a finite number >= 0"),
        ("--runtime-knowledge", "oracle", "--runtime-knowledge: must be one of declared, none"),
        ("--tick", "-5", "--tick: must be a finite number of seconds >= 0"),
        ("--policy", "sjf", "--policy: unknown policy 'sjf'"),
    ):
        out = runner.invoke(app, [*base, flag, value])
        assert out.exit_code != 0 and message in out.output and "Traceback" not in out.output
        assert len(out.output.strip().splitlines()) == 1, out.output


def test_simconfig_refuses_a_negative_estimate_error():
    with pytest.raises(SpecError, match="--estimate-error"):
        simulate(
            make_cluster({"a": (1, 8)}),
            make_policy("fifo"),
            [job("a", 0.0, 1, 10.0)],
            SimConfig(estimate_error=-1),
        )


def test_a_trace_row_with_a_negative_duration_is_refused_naming_the_row(tmp_path):
    from suanli.sched.traces.philly import load_philly

    trace = tmp_path / "jobs.csv"
    trace.write_text("timestamp,duration,num_gpus\n2017-10-01 00:00:00,600,1\n2017-10-01 00:01:00,-5,2\n")
    with pytest.raises(SpecError, match=r"jobs\.csv:3: duration and num_gpus must be > 0, got -5\.0 and 2"):
        load_philly(trace, ["a"])


def _two_tenants() -> list:
    """A big tenant keeps 8 GPUs busy with a stream of 1-hour jobs; the small one submits one
    4-hour job an hour in. Shortest-first alone would keep the small tenant behind every short job."""
    big = [job(f"big{i}", 600.0 * i, 4, 3600.0, queue="big") for i in range(60)]
    return [*big, job("small", 3600.0, 4, 4 * 3600.0, queue="small")]


def test_the_small_tenant_waits_at_most_its_fair_share():
    jobs = _two_tenants()
    config = SimConfig(estimate_error=0.0)

    def wait_h(policy: Policy) -> float:
        run = simulate(make_cluster({"a": (1, 8)}), policy, jobs, config)
        small = next(s for s in run.jobs if s.job.job_id == "small")
        return (small.first_start_s - small.job.submit_s) / 3600

    shares = make_policy("suanli")
    shares.fair_shares = {"big": 0.5, "small": 0.5}  # type: ignore[attr-defined]
    # Half the cluster is due to it and the big tenant holds all of it: it starts at once.
    assert wait_h(shares) == 0.0
    assert wait_h(make_policy("suanli")) > 4.0  # without fair share it waits behind the stream


def test_fair_share_usage_halves_every_half_life():
    from suanli.sched.policies.suanli import SuanliPolicy

    policy = SuanliPolicy(fair_shares={"a": 0.5, "b": 0.5}, usage_half_life_s=3600.0)
    cluster = make_cluster({"a": (1, 8)})
    busy = JobState(job=job("x", 0.0, 8, 1e6, queue="a"), status="running")
    for now_s, held in ((0.0, {"a": 8}), (1800.0, {"a": 8}), (1800.0 + 2 * 3600.0, {})):
        policy.on_round(View(now_s, {"x": busy}, cluster, queue_held=held))
    # 8 GPUs × 1800 s, then two half-lives with nothing held: a quarter is left.
    assert policy._usage_gpu_s["a"] == pytest.approx(8 * 1800.0 / 4)


def test_fair_shares_come_from_the_service_yaml_and_a_policy_without_them_refuses(tmp_path):
    from suanli.service.admission import ServiceConfig, local_cluster
    from suanli.service.scheduling import SuanliScheduler
    from suanli.spec import load

    path = tmp_path / "service.yaml"
    path.write_text("queues:\n  big: {fair_share: 3}\n  small: {fair_share: 1}\n  other: {}\n")
    config = load(ServiceConfig, path)
    assert config.fair_shares() == {"big": 3.0, "small": 1.0}
    scheduler = SuanliScheduler(local_cluster(), "suanli", config.fair_shares())
    assert scheduler.inner.policy.fair_shares == {"big": 3.0, "small": 1.0}  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="queues: fair_share is set but policy tiresias has none; use one of"):
        make_policy("tiresias", config.fair_shares())
