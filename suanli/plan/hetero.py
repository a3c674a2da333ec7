"""Heterogeneous plans: one job on several accelerator types at once.

(a) Pipeline stages on different pools (HetPipe, Park et al. 2020; Metis, Um et al. 2024): all
    stages share tp and dp, each pool contributes whole stages, and layers are split by stage
    speed (faster stages take more layers) within each stage's memory.
(b) Data-parallel groups of different types (Whale, Jia et al. 2022; Sia-style batch splits):
    each pool trains a full replica group with its best layout on a share of the global batch;
    the shares minimise the slowest group's step time (each group's time grows with its share:
    min-max water-filling, one batch granule at a time); gradients are then averaged across pools.

Every mixed plan states the stack that runs it. No collective library spans vendors (NCCL, RCCL,
HCCL, MCCL each speak only to their own devices), so pipelines mix pools of one vendor only; pools
of different vendors mix only as data-parallel groups whose gradient exchange is staged through
host memory (device→host over PCIe, the NIC, host→device), costed as such. Each mixed plan also
says whether it beats the best single-pool plan, and by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

from suanli.comm.estimate import p2p_time_s
from suanli.perf.compute import hardware
from suanli.perf.flops import model_flops_per_token
from suanli.perf.memory import GRAD_BYTES, pipeline_fit
from suanli.perf.step import Workload, estimate_step, layer_split, micro_batches
from suanli.plan.objective import JobShape, finish_plan, rank_key
from suanli.plan.space import MEMORY_SAVERS, Target
from suanli.spec.accelerator import Accelerator
from suanli.spec.calibration import load_calibration
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.job import JobSpec
from suanli.spec.plan import Layout, Plan, StageAssignment, StepEstimate

PIPELINE_MICRO_BATCHES = (1, 2)
# Host staging: PCIe 4.0 x16 (16 GT/s x 16 lanes, ~32 GB/s per direction), the link every
# accelerator here has at least, at the collective model's PCIe efficiency (SimAI calbusbw.h).
HOST_LINK_GB_S = 32.0


def vendor_of(target_accelerator: Accelerator) -> str:
    return target_accelerator.vendor.split()[0].lower()


def host_staged_sync_s(cluster: Cluster, pools: list[str], shard_bytes: float) -> float:
    """Cross-vendor gradient exchange through host memory: copy out over PCIe, send over the
    NIC, copy in, in both directions of the exchange (no device collective spans the vendors)."""
    efficiency = float(load_calibration("comm_model.yaml")["link_efficiency"]["pcie"]["value"])
    copy_s = shard_bytes / (HOST_LINK_GB_S * efficiency * 1e9)
    network_s = max(
        p2p_time_s(cluster, a, b, shard_bytes, same_node=False) for a, b in combinations(pools, 2)
    )
    return 2 * (copy_s + network_s + copy_s)


def stack_note(accelerators: list[Accelerator], kind: str) -> str:
    """The line saying what runs a mixed plan."""
    vendors = sorted({a.vendor for a in accelerators})
    libraries = ", ".join(sorted({a.software_stack for a in accelerators}))
    if len(vendors) == 1:
        return f"stack: one {vendors[0]} job ({libraries}); {kind} over the vendor's collective library"
    return (
        f"stack: one job per vendor ({libraries}) as data-parallel groups; no collective library spans "
        f"{' and '.join(vendors)}, so gradients are exchanged host-staged (PCIe + NIC), costed as such"
    )


def _common_tps(targets: tuple[Target, ...], model_heads: int, kv_heads: int) -> list[int]:
    per_node = min(t.per_node for t in targets)
    return [
        tp
        for tp in (1, 2, 4, 8)
        if per_node % tp == 0 and model_heads % tp == 0 and (kv_heads % tp == 0 or tp % kv_heads == 0)
    ]


def pipeline_mixes(shape: JobShape, cluster: Cluster, group: tuple[Target, ...], stack: str) -> list[Plan]:
    """Pipelines whose stages run on the pools of `group`, in the given order."""
    model, work = shape.model, shape.work
    plans = []
    for tp in _common_tps(group, model.n_heads, model.kv_heads):
        for dp in (d for d in range(1, work.global_batch + 1) if work.global_batch % d == 0):
            stage_counts = [t.gpus // (tp * dp) for t in group]
            if min(stage_counts) < 1:
                break
            pp = sum(stage_counts)
            if pp > model.n_layers or pp < 2:
                continue
            pools = [t.pool for t, n in zip(group, stage_counts, strict=True) for _ in range(n)]
            for micro in PIPELINE_MICRO_BATCHES:
                if (work.global_batch // dp) % micro:
                    continue
                plan = _first_fitting_pipeline(shape, cluster, group, tp, dp, pp, micro, pools, stack)
                if plan is not None:
                    plans.append(plan)
    return plans


def _first_fitting_pipeline(
    shape: JobShape,
    cluster: Cluster,
    group: tuple[Target, ...],
    tp: int,
    dp: int,
    pp: int,
    micro: int,
    pools: list[str],
    stack: str,
) -> Plan | None:
    """The plan with the cheapest memory saver whose every stage fits, or None."""
    model, work = shape.model, shape.work
    accelerator_of = {t.pool: t.accelerator for t in group}
    accelerators = [accelerator_of[p] for p in pools]
    by_slug = {a.slug: hardware(a, work.precision, stack) for a in accelerators}
    stage_hw = [by_slug[a.slug] for a in accelerators]
    for recompute, zero in MEMORY_SAVERS:
        layout = Layout(
            tp=tp,
            pp=pp,
            dp=dp,
            zero_stage=zero,
            micro_batch=micro,
            recompute=recompute,
            sequence_parallel=tp > 1,
        )
        counts = layer_split(model, layout, work, stage_hw)
        n_micro = micro_batches(layout, work.global_batch)
        if not pipeline_fit(
            model, layout, counts, accelerators, work.seq_len, n_micro, work.precision, stack
        ).fits:
            continue
        estimate = estimate_step(
            model, work, layout, cluster, pools[0], stack=stack, stage_pools=pools, layer_counts=counts
        )
        if not estimate.fits:
            continue
        layers = {t.pool: sum(c for c, p in zip(counts, pools, strict=True) if p == t.pool) for t in group}
        stages = [
            StageAssignment(
                pool=t.pool,
                gpus=pools.count(t.pool) * tp * dp,
                layers=layers[t.pool],
                accelerator=t.accelerator.slug,
            )
            for t in group
        ]
        return Plan(
            accelerator="+".join(t.accelerator.slug for t in group),
            gpus=layout.world_size,
            layout=layout,
            stages=stages,
            estimate=estimate,
            notes=[f"pipeline across pools: {' → '.join(f'{s.pool} ({s.layers} layers)' for s in stages)}"],
        )
    return None


def best_of_mirrors(
    shape: JobShape, cluster: Cluster, group: list[Target], stack: str, key: Callable[[Plan], float]
) -> list[Plan]:
    """Pipelines over `group` in both stage orders (the first stage holds the most activations:
    most memory first, and the reverse), keeping the better of each mirror pair."""
    order = sorted(group, key=lambda t: -(t.accelerator.memory_gb or 0))
    best: dict[tuple[int, int, int], Plan] = {}
    for ordered in (order, order[::-1]):
        for plan in pipeline_mixes(shape, cluster, tuple(ordered), stack):
            pair = (plan.layout.tp, plan.layout.dp, plan.layout.micro_batch)
            if pair not in best or key(plan) < key(best[pair]):
                best[pair] = plan
    accelerators = [t.accelerator for t in group]
    for plan in best.values():
        plan.notes.append(stack_note(accelerators, "pipeline stages and data parallelism"))
    return list(best.values())


def data_parallel_mix(shape: JobShape, cluster: Cluster, members: list[Plan], stack: str) -> Plan | None:
    """Data-parallel groups on different pools, each with its best layout, the batch split by
    speed; gradients are averaged across pools after each pool's own reduction."""
    work = shape.work
    split = min_max_batch_split(shape, cluster, members, stack)
    if split is None:
        return None
    shares, estimates = split
    groups = []
    for plan, share, estimate in zip(members, shares, estimates, strict=True):
        assert plan.pool is not None
        groups.append(
            StageAssignment(
                pool=plan.pool,
                gpus=plan.gpus,
                layers=shape.model.n_layers,
                kind="data-parallel-group",
                accelerator=plan.accelerator,
                layout=plan.layout,
                global_batch=share,
                step_time_s=estimate.step_time_s,
            )
        )
    # each GPU of the smallest group exchanges its shard of the fp32 gradients with the others
    shard_bytes = shape.model.param_count() * GRAD_BYTES / min(p.gpus for p in members)
    pools = [p.pool for p in members if p.pool]
    accelerators = [a for a in (cluster.accelerator_of(p) for p in pools) if a is not None]
    if len({vendor_of(a) for a in accelerators}) > 1:
        sync_s = host_staged_sync_s(cluster, pools, shard_bytes)
    else:
        sync_s = 2 * max(
            p2p_time_s(cluster, a, b, shard_bytes, same_node=False) for a, b in combinations(pools, 2)
        )
    slowest = max(estimates, key=lambda e: e.step_time_s)
    step_s = slowest.step_time_s + sync_s
    tokens_per_s = work.global_batch * work.seq_len / step_s
    gpus = sum(p.gpus for p in members)
    peak_tflops = 0.0
    for plan in members:
        accelerator = cluster.accelerator_of(plan.pool or "")
        assert accelerator is not None
        peak_tflops += hardware(accelerator, work.precision, stack).mfu_peak_tflops * plan.gpus
    mfu = model_flops_per_token(shape.model, work.seq_len) * tokens_per_s / (peak_tflops * 1e12)
    estimate = StepEstimate(
        step_time_s=step_s,
        compute_s=slowest.compute_s,
        exposed_comm_s={**slowest.exposed_comm_s, "dp-cross-pool": sync_s},
        bubble_s=slowest.bubble_s,
        optimizer_s=slowest.optimizer_s,
        other_s=slowest.other_s,
        mfu=mfu,
        hfu=mfu * slowest.hfu / slowest.mfu if slowest.mfu else 0.0,
        tokens_per_s=tokens_per_s,
        memory_gb_per_gpu=max(e.memory_gb_per_gpu for e in estimates),
        memory_breakdown_gb=slowest.memory_breakdown_gb,
        fits=True,
        binding="network" if sync_s > slowest.compute_s else slowest.binding,
    )
    return Plan(
        accelerator="+".join(p.accelerator for p in members),
        gpus=gpus,
        layout=members[0].layout,
        stages=groups,
        estimate=estimate,
        notes=[
            "data-parallel groups: "
            + ", ".join(
                f"{g.pool} {g.layout.short() if g.layout else ''} batch {g.global_batch}" for g in groups
            ),
            stack_note(accelerators, "gradients averaged across the groups"),
        ],
    )


def min_max_batch_split(
    shape: JobShape, cluster: Cluster, members: list[Plan], stack: str
) -> tuple[list[int], list[StepEstimate]] | None:
    """Per-pool batch shares (multiples of each group's dp·micro-batch) that minimise the slowest
    group's step time: each group's time grows with its share, so giving the next granule to the
    group that would finish it soonest (water-filling) reaches the min-max split. None when the
    batch cannot be split so that every group gets at least one granule and fits."""
    work = shape.work
    granules = [p.layout.dp * p.layout.micro_batch for p in members]
    cache: dict[tuple[int, int], StepEstimate | None] = {}

    def estimate(index: int, share: int) -> StepEstimate | None:
        if (index, share) not in cache:
            plan = members[index]
            assert plan.pool is not None
            part = Workload(work.seq_len, share, work.precision)
            found = estimate_step(shape.model, part, plan.layout, cluster, plan.pool, stack=stack)
            cache[(index, share)] = found if found.fits else None
        return cache[(index, share)]

    shares = list(granules)
    remaining = work.global_batch - sum(shares)
    while remaining > 0:
        options = []
        for index, granule in enumerate(granules):
            if granule <= remaining and (found := estimate(index, shares[index] + granule)) is not None:
                options.append((found.step_time_s, index))
        if not options:
            return None
        index = min(options)[1]
        shares[index] += granules[index]
        remaining -= granules[index]
    estimates = [estimate(i, share) for i, share in enumerate(shares)]
    if remaining or any(e is None for e in estimates):
        return None
    return shares, [e for e in estimates if e is not None]


def heterogeneous_plans(
    shape: JobShape,
    job: JobSpec,
    cluster: Cluster,
    targets: list[Target],
    best_by_pool: dict[str, Plan],
    stack: str,
    objective: str,
) -> list[Plan]:
    """Mixed-pool plans, each annotated against the best single-pool plan."""
    del job  # the fixed parallelism degrees apply to single-pool plans
    key = rank_key(objective)
    by_pool = {  # a pool whose nodes have no NICs cannot exchange anything with another pool
        t.pool: t
        for t in targets
        if (t.accelerator.peak("bf16") or t.accelerator.peak("fp16")) and cluster.node_type_of(t.pool).nics
    }
    pools = list(by_pool)
    mixed: list[Plan] = []
    for size in range(2, min(3, len(pools)) + 1):
        for combo in combinations(pools, size):
            if len({vendor_of(by_pool[p].accelerator) for p in combo}) == 1:
                mixed += best_of_mirrors(shape, cluster, [by_pool[p] for p in combo], stack, key)
            members = [best_by_pool[p] for p in combo if p in best_by_pool]
            if len(members) == size:
                try:
                    plan = data_parallel_mix(shape, cluster, members, stack)
                except SpecError:
                    plan = None
                if plan is not None:
                    mixed.append(plan)
    best_single = min(best_by_pool.values(), key=key, default=None)
    for plan in mixed:
        finish_plan(plan, shape, cluster)
        if best_single is not None and best_single.estimate and plan.estimate:
            speedup = plan.estimate.tokens_per_s / best_single.estimate.tokens_per_s
            verdict = "beats" if key(plan) < key(best_single) else "does not beat"
            line = (
                f"{verdict} the best single pool ({best_single.pool}, {best_single.gpus} GPUs) "
                f"on {objective}: "
                f"{speedup:.2f}× its throughput with {plan.gpus / best_single.gpus:.2f}× the GPUs"
            )
            if plan.cost is not None and best_single.cost is not None:
                line += f", {plan.cost / best_single.cost:.2f}× its cost"
            plan.notes.append(line)
    return mixed
