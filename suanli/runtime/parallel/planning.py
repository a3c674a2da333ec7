"""The planner on the machine a job runs on: `layout: auto`, and the predicted step time of a
layout, so a run can be checked against the performance model.

The pool is this node: `processes` accelerators of the config's accelerator, or, on a machine
without one, the catalog's measured `cpu-1core` (one process per core, as torchrun runs them).
The processes of a CPU node talk through gloo over loopback, modelled as a PCIe switch at the
gloo bandwidth and latency measured by benchmarks/cpu_calibration.py.
"""

from __future__ import annotations

from suanli.perf.step import Workload, estimate_step
from suanli.plan.search import best_plan_on_pool
from suanli.runtime.config import TrainConfig
from suanli.spec.accelerator import Accelerator
from suanli.spec.catalog import CATALOG
from suanli.spec.cluster import Cluster, Pool
from suanli.spec.errors import SpecError
from suanli.spec.job import JobSpec, Parallelism, Training
from suanli.spec.model import ModelSpec
from suanli.spec.node import IntraNodeTopology, NicGroup, NodeType
from suanli.spec.plan import Layout, Plan

CPU_ACCELERATOR = "cpu-1core"
POOL = "this-node"
GLOO_LATENCY_US = 99.0  # benchmarks/cpu_calibration.py: one-float gloo all-reduce on this machine
STACK = "suanli-runtime"


def node_accelerator(config: TrainConfig) -> Accelerator:
    return CATALOG.accelerator(config.accelerator or CPU_ACCELERATOR, field="accelerator")


def this_node(accelerator: Accelerator, processes: int, extra: list[Accelerator] | None = None) -> Cluster:
    """A one-pool cluster of `processes` × `accelerator` (and pools of `extra` accelerators, one each)."""
    types, pools = [], []
    for index, member in enumerate([accelerator, *(extra or [])]):
        count = processes if index == 0 else 1
        link_gb_s = member.intra_node_bw_gb_s or 1.0
        cpu = member.family == "cpu"
        types.append(
            NodeType(
                slug=f"node-{index}",
                name=f"{count} × {member.name}",
                accelerator=member.slug,
                accelerators_per_node=count,
                topology=IntraNodeTopology(
                    kind="pcie-tree" if cpu else "nvswitch",
                    link_bw_gb_s=link_gb_s,
                    link_latency_us=GLOO_LATENCY_US if cpu else 1.0,
                    groups=[list(range(count))] if cpu else None,
                ),
                # pools meet over the same loopback: a "NIC" at the gloo bandwidth
                nics=[NicGroup(count=1, gbit_s=8 * link_gb_s, kind="ethernet")] if cpu else [],
                cpu_cores=max(count, 1),
                memory_gb=(member.memory_gb or 1.0) * count,
                source="the node a job runs on (suanli.runtime.parallel.planning)",
            )
        )
        pools.append(Pool(name=POOL if index == 0 else f"{POOL}-{index}", node_type=f"node-{index}", nodes=1))
    known = {a.slug for a in CATALOG.accelerators}
    inline = [a for a in [accelerator, *(extra or [])] if a.slug not in known]
    return Cluster(name="this-node", pools=pools, node_types=types, accelerators=inline)


def predicted_step_s(
    spec: ModelSpec, config: TrainConfig, layout: Layout, efficiency: float, processes: int | None = None
) -> float:
    """The performance model's step time of `layout` on this node."""
    cluster = this_node(node_accelerator(config), processes or layout.world_size)
    work = Workload(config.seq_len, config.global_batch_size, config.precision)
    return estimate_step(spec, work, layout, cluster, POOL, stack=STACK, efficiency=efficiency).step_time_s


def fit_efficiency(spec: ModelSpec, config: TrainConfig, layout: Layout, measured_s: float) -> float:
    """The efficiency factor at which the model predicts `measured_s` for `layout` (bisection on a
    log scale; the predicted step time falls as efficiency rises)."""
    low, high = 1e-4, 10.0
    for _ in range(40):
        middle = (low * high) ** 0.5
        if predicted_step_s(spec, config, layout, middle) > measured_s:
            low = middle
        else:
            high = middle
    return (low * high) ** 0.5


def auto_plan(config: TrainConfig, processes: int) -> Plan:
    """`layout: auto`: the planner's best layout for this job on `processes` devices of this node."""
    spec = config.resolved_model()
    job = JobSpec(
        name="train",
        model=spec,
        training=Training(
            seq_len=config.seq_len, global_batch_size=config.global_batch_size, precision=config.precision
        ),
        parallelism=Parallelism(),
    )
    accelerator = node_accelerator(config)
    plan = best_plan_on_pool(job, this_node(accelerator, processes), POOL, processes, stack=STACK)
    if plan is None:
        raise SpecError(
            f"layout: auto found no layout of {spec.slug} that fits {processes} × {accelerator.slug}"
        )
    return plan
