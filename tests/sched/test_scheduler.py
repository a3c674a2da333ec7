"""The live `Scheduler` API and the policies' defining behaviours."""

from __future__ import annotations

import numpy as np
import pytest

from suanli.sched.cluster_state import Slot
from suanli.sched.policies import make_policy
from suanli.sched.policies.gavel import gavel_allocation
from suanli.sched.scheduler import Scheduler
from suanli.spec.errors import SpecError
from tests.sched.conftest import job, make_cluster


def started(decisions):
    return {d.job_id for d in decisions if d.action == "start"}


def test_job_that_can_never_fit_is_rejected_at_submission():
    sched = Scheduler(make_cluster({"a": (2, 8)}), make_policy("fifo"))
    with pytest.raises(SpecError, match=r"asks for 17 GPUs .* has 16"):
        sched.submit(job("huge", 0, 17, 10.0))
    with pytest.raises(SpecError, match="none of its accelerator types"):
        sched.submit(job("alien", 0, 1, {"h100": 10.0}))
    with pytest.raises(SpecError, match="unknown policy"):
        make_policy("nope")


def test_fifo_head_of_line_blocks_and_gang_is_never_partial():
    sched = Scheduler(make_cluster({"a": (1, 8)}), make_policy("fifo"))
    sched.submit(job("a", 0, 6, 100.0))
    sched.submit(job("b", 1, 4, 100.0))
    sched.submit(job("c", 2, 1, 100.0))
    assert started(sched.tick(3)) == {"a"}  # b does not fit whole; c must wait behind b
    sched.job_finished("a", 100)
    assert started(sched.tick(100)) == {"b", "c"}
    assert sched.cluster.free_whole_by_type["a"] == 3


def test_fifo_serves_a_higher_priority_first_then_submit_order():
    sched = Scheduler(make_cluster({"a": (1, 8)}), make_policy("fifo"))
    sched.submit(job("running", 0, 8, 100.0))
    assert started(sched.tick(0)) == {"running"}
    sched.submit(job("early", 1, 8, 100.0))
    sched.submit(job("urgent", 2, 8, 100.0, priority=10))
    sched.submit(job("late", 3, 8, 100.0))
    sched.job_finished("running", 100)
    assert started(sched.tick(100)) == {"urgent"}
    sched.job_finished("urgent", 200)
    assert started(sched.tick(200)) == {"early"}


def test_easy_backfill_starts_short_jobs_without_delaying_the_head():
    sched = Scheduler(make_cluster({"a": (1, 8)}), make_policy("backfill"))
    sched.submit(job("long", 0, 6, 1000.0))
    sched.tick(0)
    sched.submit(job("wide", 1, 8, 100.0))  # blocked until t=1000: reservation
    sched.submit(job("short", 2, 2, 500.0))  # ends at 502 < 1000: may backfill
    sched.submit(job("late", 3, 2, 5000.0))  # would delay "wide": must wait
    decisions = sched.tick(3)
    assert started(decisions) == {"short"}


def test_tiresias_preempts_the_job_with_most_attained_service():
    policy = make_policy("tiresias")
    policy.thresholds_gpu_s = [100.0]
    sched = Scheduler(make_cluster({"a": (1, 4)}), policy)
    sched.submit(job("old", 0, 4, 10_000.0))
    sched.tick(0)
    sched.submit(job("new", 50, 4, 10.0))
    decisions = sched.tick(60)  # old has 240 GPU·s > 100: it drops to the lower queue
    assert {(d.action, d.job_id) for d in decisions} == {("preempt", "old"), ("start", "new")}
    assert sched.jobs["old"].preemptions == 1 and 0 < sched.jobs["old"].progress < 1


def test_suanli_sends_each_job_to_its_fast_type_and_runs_short_work_first():
    sched = Scheduler(make_cluster({"fast": (1, 4), "slow": (1, 4)}), make_policy("suanli"))
    sched.submit(job("long", 0, 4, {"fast": 1000.0, "slow": 1500.0}))
    sched.submit(job("short", 0, 4, {"fast": 10.0, "slow": 100.0}))
    decisions = {d.job_id: d.accel_type for d in sched.tick(0) if d.action == "start"}
    assert decisions == {"short": "fast", "long": "slow"}


def test_cancel_snapshot_and_finish():
    sched = Scheduler(make_cluster({"a": (1, 8)}), make_policy("fifo"))
    sched.submit(job("x", 0, 8, 100.0))
    sched.submit(job("y", 0, 8, 100.0))
    sched.tick(0)
    snap = sched.snapshot(now_s=50)
    assert snap["accelerators"]["a"] == {"total": 8, "free": 0}
    assert {j["job_id"]: j["progress"] for j in snap["jobs"]} == {"x": 0.5, "y": 0.0}
    sched.cancel("y")
    sched.job_finished("x", 100)
    assert sched.snapshot()["jobs"] == [] and sched.cluster.free_whole_by_type["a"] == 8
    with pytest.raises(SpecError, match="already finished"):
        sched.cancel("x")


def test_adopted_job_holds_its_gpus_until_it_finishes():
    sched = Scheduler(make_cluster({"a": (1, 8)}), make_policy("fifo"))
    sched.adopt(job("old", 0, 6, 100.0), "a", now_s=40.0)
    assert sched.cluster.free_whole_by_type["a"] == 2 and sched.queue_held["default"] == 6
    assert not sched.pending and sched.jobs["old"].placement == (("a-0", 6),)
    sched.submit(job("new", 50, 4, 10.0))
    assert sched.tick(50.0) == []  # 4 GPUs do not fit beside the adopted 6
    assert sched.snapshot(now_s=90.0)["jobs"][0]["progress"] == 0.5  # runs from 40 s, no restart cost
    sched.job_finished("old", 140.0)
    assert started(sched.tick(140.0)) == {"new"}
    assert sched.queue_held["default"] == 4 and sched.cluster.free_whole_by_type["a"] == 4


def test_adopting_onto_busy_or_invalid_gpus_is_a_one_line_error():
    sched = Scheduler(make_cluster({"a": (1, 4)}), make_policy("fifo"))
    sched.adopt(job("first", 0, 2, 100.0), "a", now_s=0.0)
    taken = sched.cluster.held["first"]
    for bad, slots, reason in [
        (job("second", 0, 2, 100.0), taken, r"a-0 GPU 0 is busy \(free 0/1000\)"),
        (job("third", 0, 3, 100.0), None, r"no free room for its 3 slot\(s\) on a"),
        (job("fourth", 0, 1, 100.0), (Slot(node=7, gpu=0),), "node 7, which does not exist"),
        (job("fifth", 0, 1, {"b": 1.0}), None, r"cannot adopt it on a; it runs on \['b'\]"),
    ]:
        with pytest.raises(SpecError, match=reason) as error:
            sched.adopt(bad, "a", now_s=0.0, slots=slots)
        assert "\n" not in str(error.value)
    assert set(sched.jobs) == {"first"} and sched.cluster.free_whole_by_type["a"] == 2  # nothing leaked


def test_gavel_lp_gives_each_type_to_the_job_that_gains_most():
    # Job 0 is 4x faster on type 1, job 1 only 1.5x: max-sum puts job 0 on type 1, job 1 on type 0.
    throughput = np.array([[1.0, 4.0], [1.0, 1.5]])
    x = gavel_allocation(throughput, np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert np.allclose(x, [[0, 1], [1, 0]], atol=1e-6)
    fair = gavel_allocation(throughput, np.array([1.0, 1.0]), np.array([1.0, 1.0]), "max_min")
    normalised = (throughput / throughput.max(axis=1, keepdims=True) * fair).sum(axis=1)
    assert normalised.min() == pytest.approx(normalised.max(), rel=1e-6)  # max-min equalises
    assert (fair.sum(axis=1) <= 1 + 1e-9).all() and (fair.sum(axis=0) <= 1 + 1e-9).all()


def test_job_spec_becomes_a_sched_job_restricted_to_its_accelerators():
    from suanli.sched.job import sched_job_from_spec
    from suanli.spec import Cluster, JobSpec

    spec = JobSpec.model_validate(
        {"name": "ft", "run": "python train.py", "resources": {"accelerators": "A100:8"}, "walltime": "2h"}
    )
    pools = [
        {"name": "a100", "node_type": "hgx-a100", "nodes": 1},
        {"name": "h100", "node_type": "hgx-h100", "nodes": 1},
    ]
    cluster = Cluster.model_validate({"name": "c", "pools": pools})
    runtimes = {"a100-sxm-80gb": 3600.0, "h100-sxm": 1800.0}
    job = sched_job_from_spec(spec, cluster, "ft-1", 0.0, runtimes)
    assert job.gpus == 8 and job.types == ("a100-sxm-80gb",) and job.estimate_s == 7200.0
    assert job.app == ""  # no application, no model: the estimator has no application history to use
    named = spec.model_copy(update={"application": "bert"})
    assert sched_job_from_spec(named, cluster, "ft-3", 0.0, runtimes).app == "bert"
    trained = JobSpec.model_validate(
        {"name": "m", "model": "llama3.1-8b", "resources": {"accelerators": "A100:8"}}
    )
    assert sched_job_from_spec(trained, cluster, "ft-4", 0.0, runtimes).app == "llama3.1-8b"
    sched = Scheduler(make_cluster({"h100-sxm": (1, 8)}), make_policy("suanli"))
    with pytest.raises(SpecError, match="none of its accelerator types"):
        sched.submit(job)
    h100_only = Cluster.model_validate({"name": "h", "pools": pools[1:]})
    with pytest.raises(SpecError, match="a100:8: no pool has a100-sxm-80gb"):
        sched_job_from_spec(spec, h100_only, "ft-2", 0.0, runtimes)
