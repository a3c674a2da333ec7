"""The search space: which pools and GPU counts a job may use, and every parallel layout on them.

A layout must divide evenly (Megatron-LM's constraints): tp divides the node and the KV heads,
tp·pp·cp divides the GPUs, dp divides the global batch, ep divides the experts and tp·dp·cp,
interleaving needs micro-batches divisible by pp and layers that split over pp·vpp chunks — evenly,
or unevenly the way Megatron-Core expresses it (first and last stage differ, `megatron_pipeline_split`;
or the embedding and loss counted as a layer each, `embedding_loss_split`, Llama 3's split).
Of the memory savers — recomputation and ZeRO-2/3 — each structural layout keeps the cheapest
setting that fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from suanli.perf import memory as mem
from suanli.perf.compute import Hardware
from suanli.perf.step import Workload, layer_split, micro_batches
from suanli.plan.validate import embedding_loss_split, megatron_pipeline_split
from suanli.spec.accelerator import Accelerator
from suanli.spec.cluster import Cluster
from suanli.spec.job import JobSpec, Parallelism
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout, Recompute
from suanli.spec.request import pinned_pools, resolve

MICRO_BATCHES = (1, 2, 4, 8)
MAX_VPP = 8
LONG_SEQUENCE = 8192  # context parallelism is considered from this sequence length on
# Memory savers in order of cost: ZeRO-2 shards the gradients at no extra traffic (a reduce-scatter
# replaces the all-reduce), recomputation adds compute, ZeRO-3 adds a weight all-gather per pass.
MEMORY_SAVERS: tuple[tuple[Recompute, Literal[0, 1, 2, 3]], ...] = (
    ("none", 1),
    ("none", 2),
    ("selective", 1),
    ("selective", 2),
    ("none", 3),
    ("selective", 3),
    ("full", 1),
    ("full", 2),
    ("full", 3),
)


@dataclass(frozen=True)
class Target:
    """One pool and how many of its accelerators the job may use."""

    pool: str
    accelerator: Accelerator
    gpus: int
    per_node: int


def targets(job: JobSpec, cluster: Cluster) -> tuple[list[Target], list[str]]:
    """Pools the job may run on with the GPU count each of its alternatives asks for, and why the
    others are out. A job that names no accelerator may use each accelerator pool whole."""
    if job.resources.accelerators:
        resolution = resolve(job, cluster)
        wanted = {(host.pool, option.count) for option in resolution.options for host in option.hosts}
        reasons = [f"{r.request}: {r.reason}" for r in resolution.refused]
    else:
        wanted = {(pool, cluster.accelerator_count(pool)) for pool in pinned_pools(job, cluster)}
        reasons = []
    if job.script is not None:
        # Judging a script parses it (libcst): imported only for jobs that name one.
        from suanli.port.platform import runnable_pools

        runnable, judgements = runnable_pools(job, cluster, [pool for pool, _ in wanted])
        reasons += [j.reason() for j in judgements if not j.runnable]  # the script cannot run there
        wanted = {(pool, count) for pool, count in wanted if pool in runnable}
    order = {pool.name: i for i, pool in enumerate(cluster.pools)}
    found = []
    for pool, count in sorted(wanted, key=lambda pc: (order[pc[0]], pc[1])):
        accelerator = cluster.accelerator_of(pool)
        if accelerator is None:
            continue
        unknown = [f for f in ("bf16/fp16 peak", "memory") if _unknown(accelerator, f)]
        if unknown:
            what = " and ".join(unknown)
            reasons.append(f"pool {pool}: the catalog does not know the {what} of {accelerator.slug}")
            continue
        node = cluster.node_type_of(pool)
        if not node.nics and count > node.accelerators_per_node:
            reasons.append(
                f"pool {pool}: node type {node.slug} has no NICs, so {count} accelerators cannot span "
                f"its nodes (one node holds {node.accelerators_per_node})"
            )
            continue
        found.append(Target(pool, accelerator, count, node.accelerators_per_node))
    return found, reasons


def _unknown(accelerator: Accelerator, figure: str) -> bool:
    if figure == "memory":
        return accelerator.memory_gb is None
    return accelerator.peak("bf16") is None and accelerator.peak("fp16") is None


def _divisors(n: int, limit: int | None = None) -> list[int]:
    return [d for d in range(1, (limit or n) + 1) if n % d == 0]


def _fixed(value: object, options: list[int]) -> list[int]:
    return [value] if isinstance(value, int) else options


def structural_layouts(
    model: ModelSpec, work: Workload, target: Target, fixed: Parallelism
) -> Iterator[Layout]:
    """Every evenly dividing (tp, pp, vpp, cp, dp, ep, micro-batch) on `target`, with no memory
    savers (those are chosen by `cheapest_fitting`)."""
    gpus, per_node = target.gpus, target.per_node
    tps = [t for t in _divisors(per_node) if model.kv_heads % t == 0 or t % model.kv_heads == 0]
    tps = [t for t in tps if model.n_heads % t == 0]
    cps = [1] + (
        [c for c in (2, 4, 8) if work.seq_len % (2 * c) == 0] if work.seq_len >= LONG_SEQUENCE else []
    )
    for tp in _fixed(fixed.tensor_parallel_degree, tps):
        for cp in _fixed(fixed.context_parallel_degree, cps):
            if gpus % (tp * cp):
                continue
            for pp in _fixed(fixed.pipeline_parallel_degree, _divisors(gpus // (tp * cp), model.n_layers)):
                if gpus % (tp * cp * pp):
                    continue
                dp = gpus // (tp * cp * pp)
                if work.global_batch % dp or not _dp_matches(dp, fixed):
                    continue
                yield from _inner(model, work, fixed, tp, cp, pp, dp)


def _dp_matches(dp: int, fixed: Parallelism) -> bool:
    """torchtitan's data-parallel degrees, where fixed: replicate·shard is the data parallelism."""
    shard, replicate = fixed.data_parallel_shard_degree, fixed.data_parallel_replicate_degree
    if isinstance(shard, int) and isinstance(replicate, int):
        return dp == shard * replicate
    return all(dp % d == 0 for d in (shard, replicate) if isinstance(d, int))


def _inner(
    model: ModelSpec, work: Workload, fixed: Parallelism, tp: int, cp: int, pp: int, dp: int
) -> Iterator[Layout]:
    per_rank = work.global_batch // dp
    eps = [1]
    if model.moe:
        group = tp * dp * cp
        eps = [e for e in _divisors(model.moe.experts) if group % e == 0 and (dp % e == 0 or e % dp == 0)]
    schedules = [1]
    if pp > 2 and model.n_layers % pp == 0:
        per_stage = model.n_layers // pp
        schedules += [v for v in range(2, MAX_VPP + 1) if per_stage % v == 0]
    elif pp > 2:
        schedules += [
            v
            for v in range(2, MAX_VPP + 1)
            if megatron_pipeline_split(model.n_layers, pp, v) or embedding_loss_split(model.n_layers, pp, v)
        ]
    if fixed.pipeline_parallel_schedule == "1F1B":
        schedules = [1]
    elif fixed.pipeline_parallel_schedule == "Interleaved1F1B":
        schedules = [v for v in schedules if v > 1]
    for ep in _fixed(fixed.expert_parallel_degree, eps):
        for micro in _fixed(fixed.microbatch_size, [m for m in MICRO_BATCHES if per_rank % m == 0]):
            n_micro = per_rank // micro
            for vpp in schedules:
                if vpp > 1 and n_micro % pp:
                    continue
                yield Layout(
                    tp=tp,
                    pp=pp,
                    vpp=vpp,
                    dp=dp,
                    ep=ep,
                    cp=cp,
                    zero_stage=1,
                    micro_batch=micro,
                    recompute="none",
                    sequence_parallel=tp > 1,
                    schedule="Interleaved1F1B" if vpp > 1 else "1F1B",
                )


def cheapest_fitting(
    model: ModelSpec,
    work: Workload,
    layout: Layout,
    hw: Hardware,
    accelerator: Accelerator,
    fixed: Parallelism,
    stack: str,
) -> Layout | None:
    """The layout with the cheapest memory saver that fits (`perf.memory.pipeline_fit`, on the
    layer split the step estimate uses, with `stack`'s loss and recompute buffers), or None."""
    savers = MEMORY_SAVERS
    if fixed.activation_checkpoint != "auto":
        savers = tuple(s for s in savers if s[0] == fixed.activation_checkpoint)
    shard = fixed.data_parallel_shard_degree
    if isinstance(shard, int):  # FSDP shards (ZeRO-2 without, ZeRO-3 with resharding); 1: plain DDP
        savers = tuple(s for s in savers if (s[1] >= 2) == (shard > 1))
    counts = layer_split(model, layout, work, [hw] * layout.pp)
    stages = [accelerator] * layout.pp
    n_micro = micro_batches(layout, work.global_batch)
    for recompute, zero in savers:
        candidate = layout.model_copy(update={"recompute": recompute, "zero_stage": zero})
        if mem.pipeline_fit(
            model, candidate, counts, stages, work.seq_len, n_micro, work.precision, stack
        ).fits:
            return candidate
    return None


def model_state_floor_gb(model: ModelSpec) -> float:
    """Weights + fp32 gradients + Adam state of the whole model, the least any layout must hold."""
    per_param = mem.WEIGHT_BYTES + mem.GRAD_BYTES + mem.OPTIMIZER_BYTES
    return model.param_count() * per_param / mem.GB
