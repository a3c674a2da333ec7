"""EASY backfill's reservation: what the head of the queue is promised, and what may start around it."""

from __future__ import annotations

from suanli.sched.policies import make_policy
from suanli.sched.scheduler import Scheduler
from tests.sched.conftest import job, make_cluster


def test_a_start_that_cannot_be_placed_takes_no_spare_gpu_from_the_reservation():
    """8 GPUs; 5 are busy until t=100, so the 4-GPU head waits for its reservation at t=100, when
    8 - 4 = 4 GPUs are spare. A long 4-GPU job fits that spare but not the 3 GPUs free now; a long
    2-GPU job after it fits both, and starting it delays nobody (EASY's extra nodes). The start that
    could not be placed must not have used the spare GPUs up."""
    sched = Scheduler(make_cluster({"a": (2, 4)}), make_policy("backfill"))
    sched.adopt(job("busy", 0, 5, 100.0), "a", 0.0)
    sched.submit(job("head", 0, 4, 1000.0, priority=1000))
    sched.submit(job("wide_long", 0, 4, 10_000.0, priority=500))
    sched.submit(job("narrow_long", 0, 2, 10_000.0))
    assert {d.job_id for d in sched.tick(0.0) if d.action == "start"} == {"narrow_long"}
    sched.job_finished("busy", 100.0)
    assert {d.job_id for d in sched.tick(100.0) if d.action == "start"} == {"head"}  # not delayed
