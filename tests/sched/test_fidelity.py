"""Simulator fidelity (issue 12, item 3): a stop loses the work since the job's last checkpoint, at
the interval its spec names or Daly's optimum; saves stall the run; a gang split where its
collectives are slower runs slower, by the collective model and the job's sync share."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from suanli.perf.checkpoint_interval import DEFAULT_JOB_MTBF_S, daly_interval_s
from suanli.sched.cluster_state import ClusterState, Slot
from suanli.sched.job import checkpoint_interval_s, sched_job_from_spec
from suanli.sched.placement import placement_speed, placement_time_s
from suanli.sched.policies import make_policy
from suanli.sched.simulator import SimConfig, simulate
from suanli.spec import Cluster, JobSpec, load
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError
from tests.sched.conftest import job, make_cluster

REPO = Path(__file__).resolve().parents[2]
SIA_CLUSTER = REPO / "examples" / "clusters" / "sia-64gpu.yaml"
LONG_S, SHORT_S, SHORT_ARRIVES_S = 36_000.0, 1_800.0, 7_830.0


def _long_job_finish_s(**long_job) -> float:
    """Tiresias demotes an 8-GPU 10 h job at 16 GPU-h (t = 2 h); a 30-min job arriving at 2 h 10.5 min,
    between two 60 s rounds, preempts it on the event; the long job restarts when the short one ends."""
    jobs = [job("long", 0, 8, LONG_S, **long_job), job("short", SHORT_ARRIVES_S, 8, SHORT_S)]
    result = simulate(make_cluster({"a": (1, 8)}), make_policy("tiresias"), jobs)
    states = {s.job.job_id: s for s in result.jobs}
    assert states["long"].preemptions == 1 and states["short"].finish_s == SHORT_ARRIVES_S + SHORT_S
    assert states["long"].finish_s is not None
    return states["long"].finish_s


def test_a_preempted_job_loses_the_work_since_its_specs_checkpoint_interval():
    resumed_s = SHORT_ARRIVES_S + SHORT_S
    assert _long_job_finish_s() == pytest.approx(resumed_s + LONG_S - SHORT_ARRIVES_S)  # free saves: no loss
    lost_s = SHORT_ARRIVES_S % 3600.0  # 630 s since the save at 2 h
    finish_s = _long_job_finish_s(checkpoint_interval_s=3600.0)
    assert finish_s == pytest.approx(resumed_s + LONG_S - SHORT_ARRIVES_S + lost_s)


def test_without_an_interval_the_job_saves_at_dalys_optimum_and_each_save_stalls_it():
    """δ = 60 s, no failure rate declared: τ = Daly(60 s, 24 h) ≈ 53 min; the run progresses τ per
    τ + δ of wall time and loses what it did since its last completed cycle."""
    tau_s = daly_interval_s(60.0, DEFAULT_JOB_MTBF_S)
    assert 3000 < tau_s < 3300
    cycle_s = tau_s + 60.0
    speed = tau_s / cycle_s
    kept_s = (SHORT_ARRIVES_S - SHORT_ARRIVES_S % cycle_s) * speed  # work kept, in isolated seconds
    expected = SHORT_ARRIVES_S + SHORT_S + (LONG_S - kept_s) / speed
    assert _long_job_finish_s(checkpoint_s=60.0) == pytest.approx(expected)


def test_the_interval_follows_the_spec_else_the_clusters_failure_rate_at_the_jobs_width():
    spec = JobSpec.model_validate(
        {
            "name": "ck",
            "run": "python train.py",
            "resources": {"accelerators": "H100:8"},
            "checkpoint": {"interval": "10m"},
        }
    )
    cluster = Cluster.model_validate(
        {"name": "c", "pools": [{"name": "h100", "node_type": "hgx-h100", "nodes": 2}]}
    )
    from_spec = sched_job_from_spec(spec, cluster, "ck-1", 0.0, {"h100-sxm": 3600.0})
    assert from_spec.checkpoint_interval_s == 600.0 and checkpoint_interval_s(from_spec, 1e-6) == 600.0
    auto = spec.model_copy(update={"checkpoint": None})
    planned = sched_job_from_spec(auto, cluster, "ck-2", 0.0, {"h100-sxm": 3600.0})
    assert planned.checkpoint_interval_s is None
    wide = job("w", 0, 16, 100.0, checkpoint_s=30.0)
    narrow = job("n", 0, 1, 100.0, checkpoint_s=30.0)
    rate_per_gpu_s = 14.2 / 1000 / (30 * 24 * 3600)  # Llama 3's rate (Dubey et al. 2024)
    assert checkpoint_interval_s(wide, rate_per_gpu_s) == pytest.approx(  # failures + a preemption a day
        daly_interval_s(30.0, 1 / (16 * rate_per_gpu_s + 1 / DEFAULT_JOB_MTBF_S))
    )
    assert checkpoint_interval_s(wide, rate_per_gpu_s) < checkpoint_interval_s(narrow, rate_per_gpu_s)
    # a declared failure rate only adds interruptions: never a longer interval than with none known
    assert checkpoint_interval_s(narrow, rate_per_gpu_s) < checkpoint_interval_s(narrow, 0.0)
    with pytest.raises(SpecError, match="job bad: checkpoint_interval_s must be finite and > 0"):
        job("bad", 0, 1, 100.0, checkpoint_interval_s=0.0)


def _two_t4_nodes() -> Cluster:
    base = load(Cluster, SIA_CLUSTER)
    return Cluster.model_validate(
        base.model_dump()
        | {"name": "t4x2", "pools": [{"name": "t4", "node_type": "g4dn-12xlarge", "nodes": 2}]}
    )


def _profile_row(app: str, placement: str, local_bsz: str) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(read_text(f"traces/sia/profiles/{app}/placements-aws.csv")))
    return next(r for r in rows if r["placement"] == placement and r["local_bsz"] == local_bsz)


def test_a_gang_split_over_two_nodes_runs_slower_by_the_collective_model_and_its_sync_share():
    """Two 3-GPU jobs leave one T4 free on each node, so a 2-GPU job is split 1 + 1. Its sync share
    (cifar10, Sia's T4 profile, local batch 32: sync 4.2 ms of a 49 ms step packed) stretches by the
    modelled all-reduce time over the two nodes' Ethernet against PCIe within one node. Sia measured
    the split step at 2.1× the packed one; the model, which knows only the links, gives less than
    that but clearly more than 1."""
    packed, split = _profile_row("cifar10", "2", "32"), _profile_row("cifar10", "11", "32")
    share = float(packed["sync_time"]) / float(packed["step_time"])
    measured = float(split["step_time"]) / float(packed["step_time"])
    cluster = _two_t4_nodes()
    blockers = [job(f"b{i}", 0, 3, {"t4": 50_000.0}) for i in range(2)]
    # a job with no declared sync share is never slowed
    for comm_share, in_model in (({"t4": share}, True), ({}, False)):
        probe = job("probe", 10, 2, {"t4": 1000.0}, comm_share=comm_share)
        state = ClusterState.from_cluster(cluster)
        result = simulate(state, make_policy("fifo"), [*blockers, probe], SimConfig())
        ran_s = next(s.finish_s - s.first_start_s for s in result.jobs if s.job.job_id == "probe")
        if not in_model:
            assert ran_s == pytest.approx(1000.0)
            continue
        spread = (Slot(0, 3), Slot(1, 3))
        stretch = placement_time_s(state, spread) / placement_time_s(state, (Slot(0, 0), Slot(0, 1)))
        assert stretch > 2  # 50 Gbit/s Ethernet against PCIe Gen3 x16
        assert ran_s == pytest.approx(1000.0 * (1 - share + share * stretch))
        assert 1.2 < ran_s / 1000.0 < measured
        assert placement_speed(state, probe, "t4", (Slot(0, 0), Slot(0, 1))) == 1.0
