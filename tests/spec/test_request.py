"""One resolution of a request (`suanli.spec.request.resolve`): SkyPilot's alternatives, each with its
own count, against the pools of a cluster; the planner, admission and the scheduler all read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.plan.space import targets
from suanli.sched.job import sched_job_from_spec
from suanli.sched.policies import make_policy
from suanli.sched.scheduler import Scheduler
from suanli.service.admission import QueueConfig, ServiceConfig, admit
from suanli.spec import Cluster, JobSpec, SpecError, load
from suanli.spec.request import resolve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clusters"


def cluster() -> Cluster:
    return Cluster.model_validate(
        {
            "name": "two-types",
            "pools": [
                {"name": "h100", "node_type": "hgx-h100", "nodes": 1},
                {"name": "a100", "node_type": "hgx-a100", "nodes": 2},
                {"name": "cpu", "node_type": "cpu-2s-epyc9654", "nodes": 4},
            ],
        }
    )


def job(resources: dict, **fields) -> JobSpec:
    return JobSpec.model_validate({"name": "j", "run": "true", "resources": resources, **fields})


def test_each_alternative_keeps_its_own_count():
    resolution = resolve(job({"accelerators": {"H100": 8, "A100": 16}}), cluster())
    assert [(o.accel_type, o.count, o.pools) for o in resolution.options] == [
        ("h100-sxm", 8, ("h100",)),
        ("a100-sxm-80gb", 16, ("a100",)),
    ]
    assert [h.nodes for o in resolution.options for h in o.hosts] == [1, 2]
    assert resolution.counts_by_type == {"h100-sxm": 8, "a100-sxm-80gb": 16}


def test_the_scheduler_runs_the_a100_alternative_with_sixteen():
    spec = job({"accelerators": {"H100": 8, "A100": 16}})
    c = cluster()
    runtimes = {"h100-sxm": 3600.0, "a100-sxm-80gb": 5400.0, "cpu": 60.0}
    sched_job = sched_job_from_spec(spec, c, "two", 0.0, runtimes)
    assert sched_job.types == ("h100-sxm", "a100-sxm-80gb")
    assert (sched_job.width_on("h100-sxm"), sched_job.width_on("a100-sxm-80gb")) == (8, 16)
    sched = Scheduler(c, make_policy("fifo"))
    blocker = sched_job_from_spec(job({"accelerators": "H100:8"}), c, "blocker", 0.0, runtimes)
    sched.submit(blocker)
    sched.submit(sched_job)
    decisions = {d.job_id: d for d in sched.tick(0.0)}
    assert decisions["blocker"].accel_type == "h100-sxm"
    started = decisions["two"]
    assert started.accel_type == "a100-sxm-80gb"
    assert sum(n for _, n in started.placement) == 16 and len(started.slots) == 16
    assert sched.snapshot()["accelerators"]["a100-sxm-80gb"]["free"] == 0
    sched.job_finished("two", 10.0)
    assert sched.cluster.free_whole_by_type["a100-sxm-80gb"] == 16
    assert sched.queue_held["default"] == 8  # only the blocker's 8 H100 remain held


def test_the_planner_plans_each_alternative_at_its_own_count():
    spec = job({"accelerators": {"H100": 8, "A100": 16}}, model="llama3.1-8b")
    found, reasons = targets(spec, cluster())
    assert [(t.pool, t.gpus) for t in found] == [("h100", 8), ("a100", 16)] and reasons == []


def test_a_memory_range_gives_one_option_per_qualifying_type():
    resolution = resolve(job({"accelerators": "64GB..:8"}), cluster())
    assert [o.accel_type for o in resolution.options] == ["h100-sxm", "a100-sxm-80gb"]
    sia = load(Cluster, EXAMPLES / "sia-64gpu.yaml")
    small = resolve(job({"accelerators": "..16GB:4"}), sia)
    assert [(o.accel_type, o.pools) for o in small.options] == [("t4", ("t4",)), ("rtx-2080ti", ("rtx",))]


def test_an_accelerator_the_cluster_file_defines_is_admitted():
    sia = load(Cluster, EXAMPLES / "sia-64gpu.yaml")
    for name in ("t4", "Tesla-T4"):  # slug and alias of the inline definition
        placements = admit(job({"accelerators": f"{name}:8"}), sia, ServiceConfig())
        assert [(p.pool, p.nodes, p.accelerators, p.accelerator) for p in placements] == [("t4", 2, 8, "t4")]


def test_an_alternative_no_pool_hosts_is_refused_with_its_reason():
    resolution = resolve(job({"accelerators": {"H100": 16, "A100": 16}}), cluster())
    assert [o.accel_type for o in resolution.options] == ["a100-sxm-80gb"]
    assert [(r.request, r.reason) for r in resolution.refused] == [
        ("h100:16", "the largest matching pool (h100) has 8")
    ]
    refused = resolve(job({"accelerators": {"H100": 8, "MI300X": 8}}), cluster()).refused
    assert refused[0].reason == "no pool has mi300x"


@pytest.mark.parametrize(
    ("resources", "fields", "line"),
    [
        (
            {"accelerators": {"H100": 800, "A100": 16}},
            {"num_nodes": 1},
            "resources: h100:800 or a100:16 can never fit any pool of 'two-types' "
            "(h100:800: the largest matching pool (h100) has 8; "
            "a100:16: 1 node(s) of pool a100 hold 8)",
        ),
        (
            {"accelerators": ["A100:8", "H999:8"]},
            {},
            "resources.accelerators[1]: unknown accelerator 'h999'",
        ),
        ({"accelerators": "A100:8", "pool": "gpu"}, {}, "resources.pool: unknown pool 'gpu'"),
        ({"accelerators": "A100:8", "pool": "h100"}, {}, "can never fit any pool of 'two-types'"),
        ({"cpus": 4096}, {"kind": "hpc"}, "have 192 CPUs"),
    ],
)
def test_requests_that_cannot_be_hosted_fail_with_one_line(resources, fields, line):
    spec = job(resources, **fields)
    with pytest.raises(SpecError) as caught:
        resolve(spec, cluster())
    message = str(caught.value)
    assert line in message and "\n" not in message
    with pytest.raises(SpecError):  # admission refuses it with the same resolution
        admit(spec, cluster(), ServiceConfig(queues={"default": {}}))


def test_a_queue_quota_keeps_only_the_alternatives_within_it():
    spec = job({"accelerators": {"H100": 8, "A100": 16}}, queue="small")
    quota = ServiceConfig(queues={"small": QueueConfig(max_accelerators=8)})
    assert [(p.pool, p.accelerators) for p in admit(spec, cluster(), quota)] == [("h100", 8)]
    tight = ServiceConfig(queues={"small": QueueConfig(max_accelerators=4)})
    with pytest.raises(SpecError, match=r"^resources.accelerators: asks for 8 accelerators, over the quota"):
        admit(spec, cluster(), tight)
