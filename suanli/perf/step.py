"""One training step of a layout: compute, exposed communication per dimension, the pipeline
bubble, the optimizer step and fixed overheads, and memory per accelerator.

    step = busy (micro-batches × slowest stage) + bubble + exposed DP + optimizer + other

Each pipeline stage may sit on its own pool (heterogeneous pipelines); `efficiency` is the one
fitted factor per (accelerator, software stack) (calibration/perf_fitted.yaml) and scales the compute the
roofline model predicts; communication comes from the collective model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suanli.perf import memory as mem
from suanli.perf.calibration import STACK_AGNOSTIC, efficiency_factor
from suanli.perf.comm import (
    Placement,
    context_parallel_layer_s,
    context_parallel_ring,
    data_parallel_s,
    expert_parallel_layer_s,
    exposed_after_overlap_s,
    pipeline_p2p_s,
    ring_kv_width,
    ring_merge_bytes,
    tensor_parallel_layer_s,
)
from suanli.perf.compute import (
    Hardware,
    attention_time_s,
    hardware,
    kernel_overhead_s,
    layer_time,
    lm_head_time_s,
    perf_constants,
)
from suanli.perf.flops import hardware_flops_per_token, model_flops_per_token, span_kinds
from suanli.perf.moe import LEARNED_ROUTING, dispatch_bytes, expert_forward_time_s
from suanli.perf.pipeline import PipelineTime, pipeline_time, split_layers, stage_layer_indices
from suanli.spec.accelerator import Accelerator
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout, StepEstimate

# Adam: read grad, master, m, v (16 B) + write master, m, v, 16-bit weight (14 B) + grad norm (4 B)
ADAM_BYTES_PER_PARAM = 34


@dataclass(frozen=True)
class Workload:
    """What one step processes: sequences of `seq_len` tokens, `global_batch` per step."""

    seq_len: int
    global_batch: int
    precision: str = "bf16"
    eager: bool = False  # element-wise ops unfused (PyTorch eager, no torch.compile / fused kernels)


@dataclass(frozen=True)
class StageCost:
    """Per micro-batch time of one pipeline stage (one of its ranks), split by cause."""

    compute_s: float
    forward_s: float
    tp_s: float
    cp_s: float
    ep_s: float
    pp_s: float

    @property
    def slot_s(self) -> float:
        return self.compute_s + self.tp_s + self.cp_s + self.ep_s + self.pp_s

    @property
    def backward_s(self) -> float:
        return self.compute_s - self.forward_s


def micro_batches(layout: Layout, global_batch: int) -> int:
    """Micro-batches per step on each data-parallel rank."""
    per_rank = global_batch / (layout.dp * layout.micro_batch)
    if per_rank < 1:
        raise SpecError(
            f"global batch {global_batch} is smaller than dp ({layout.dp}) "
            f"× micro_batch ({layout.micro_batch})"
        )
    return math.ceil(per_rank)


def micro_tokens(layout: Layout, work: Workload) -> float:
    """Tokens of one micro-batch on one rank (a CP rank holds 1/cp of each sequence)."""
    return layout.micro_batch * work.seq_len / layout.cp


def stage_cost(
    model: ModelSpec,
    layers: list[int],
    last: bool,
    work: Workload,
    layout: Layout,
    hw: Hardware,
    place: Placement,
    efficiency: float,
    imbalance: float,
    next_pool: str | None = None,
    stack: str = STACK_AGNOSTIC,
) -> StageCost:
    """Time per micro-batch of one stage: its layers (each kind computed once), the LM head on
    the last stage, and the exposed TP/CP/EP/PP communication."""
    tokens = micro_tokens(layout, work)
    exposed = exposed_fractions(stack)
    routed = tokens / layout.tp if layout.sequence_parallel else tokens
    tp_layer = tensor_parallel_layer_s(place, layout, tokens, model.hidden, layout.recompute)
    cp_layer = ring_attention_layer_s(model, tokens, work.seq_len, layout, hw, place, efficiency, stack)
    compute = forward = ep = 0.0
    for index, count in span_kinds(model, layers):
        moe_layer = model.is_moe_layer(index)
        experts = expert_forward_time_s(model, routed, layout.ep, hw, imbalance) if moe_layer else 0.0
        t = layer_time(
            model,
            index,
            tokens,
            work.seq_len,
            layout.tp,
            layout.sequence_parallel,
            layout.recompute,
            hw,
            experts,
            work.eager,
        )
        compute += count * t.total_s / efficiency
        forward += count * t.forward_s / efficiency
        if moe_layer:
            ep += count * expert_parallel_layer_s(place, layout, dispatch_bytes(model, routed, hw.fp8))
    if last:
        head = lm_head_time_s(model, tokens, layout.tp, hw) / efficiency
        compute += head
        forward += head / 3
    # activation forward, gradient backward, at each of the rank's vpp chunk boundaries: interleaving
    # multiplies the p2p traffic by vpp (Narayanan et al. 2021, sec. 2.2.2)
    sends = 2 * layout.vpp
    pp = sends * pipeline_p2p_s(place, layout, tokens, model.hidden, next_pool)
    return StageCost(
        compute_s=compute,
        forward_s=forward,
        tp_s=len(layers) * tp_layer * exposed["tp"],
        cp_s=len(layers) * cp_layer,
        ep_s=ep * exposed["ep"],
        pp_s=pp * exposed["pp"],
    )


def ring_attention_layer_s(
    model: ModelSpec,
    tokens: float,
    seq_len: int,
    layout: Layout,
    hw: Hardware,
    place: Placement,
    efficiency: float,
    stack: str,
) -> float:
    """What context parallelism adds to one layer and micro-batch: the exposed KV (and dKV)
    transfers and the HBM traffic of merging the ring steps' partial results."""
    if layout.cp == 1:
        return 0.0
    ring = context_parallel_ring(stack)
    attention_fwd, attention_bwd = (
        t / efficiency for t in attention_time_s(model, tokens, seq_len, layout.tp, hw)
    )
    width = ring_kv_width(model, layout.tp, ring.kv_repeated)
    exposed = context_parallel_layer_s(place, layout, ring, tokens, width, attention_fwd, attention_bwd)
    q_width = model.n_heads / layout.tp * (model.mla.v_head_dim if model.mla else model.dim_per_head)
    merge = ring_merge_bytes(ring, layout, tokens, q_width) / (hw.memory_bw_gb_s * 1e9)
    return exposed + merge


def exposed_fractions(stack: str) -> dict[str, float]:
    """Share of each dimension's communication left exposed after overlap with `stack`'s software
    (calibration/perf_model.yaml: the defaults, and what a stack overlaps beyond them)."""
    constants = perf_constants()
    return constants["exposed_fraction"] | constants["stack_exposed_fraction"].get(stack, {})


def layer_split(model: ModelSpec, layout: Layout, work: Workload, stage_hw: list[Hardware]) -> list[int]:
    """Layers per pipeline stage by stage speed, giving the last stage fewer layers for the LM head."""
    if layout.pp == 1:
        return [model.n_layers]
    tokens = micro_tokens(layout, work)
    index = model.n_layers - 1
    by_hw: dict[int, float] = {}
    for hw in stage_hw:
        if id(hw) not in by_hw:
            by_hw[id(hw)] = layer_time(
                model, index, tokens, work.seq_len, layout.tp, True, "none", hw
            ).total_s
    times = [by_hw[id(hw)] for hw in stage_hw]
    speeds = [times[0] / t for t in times]
    extra = [0.0] * layout.pp
    extra[-1] = lm_head_time_s(model, tokens, layout.tp, stage_hw[-1]) / times[0]
    return split_layers(model.n_layers, speeds, extra)


def estimate_step(
    model: ModelSpec,
    work: Workload,
    layout: Layout,
    cluster: Cluster,
    pool: str,
    *,
    stack: str = STACK_AGNOSTIC,
    efficiency: float | None = None,
    moe_imbalance: float = LEARNED_ROUTING,
    layer_counts: list[int] | None = None,
    stage_pools: list[str] | None = None,
) -> StepEstimate:
    """Predict one training step of `model` with `layout` on `pool` of `cluster`.

    `efficiency` defaults to the calibrated factor for (the pool's accelerator, `stack`);
    `stage_pools` puts pipeline stage i on pool stage_pools[i] (heterogeneous pipeline);
    `layer_counts` overrides the per-stage layer split (default: balanced by stage speed)."""
    pools = stage_pools or [pool] * layout.pp
    accelerators = _stage_accelerators(cluster, layout, pools)
    by_slug = {a.slug: hardware(a, work.precision, stack) for a in accelerators}
    stage_hw = [by_slug[a.slug] for a in accelerators]
    factors = [
        efficiency if efficiency is not None else efficiency_factor(a.slug, stack) for a in accelerators
    ]
    n_micro = micro_batches(layout, work.global_batch)
    counts = layer_counts or layer_split(model, layout, work, stage_hw)
    if len(counts) != layout.pp or sum(counts) != model.n_layers:
        raise SpecError(f"layer split {counts} does not give {model.n_layers} layers to {layout.pp} stages")
    stages = stage_layer_indices(counts)
    places = [Placement(cluster, name, cluster.node_type_of(name).accelerators_per_node) for name in pools]
    kinds = _stage_kinds(model, layout, pools, stages)
    costs = _stage_costs(
        model, work, layout, pools, stages, kinds, stage_hw, places, factors, moe_imbalance, stack
    )
    timing = pipeline_time([c.slot_s for c in costs], n_micro, layout.vpp)
    dp_exposed, optimizer_s = _data_parallel_and_optimizer_s(
        model, layout, stages, kinds, costs, places, stage_hw, n_micro
    )
    memory = mem.pipeline_fit(
        model, layout, counts, accelerators, work.seq_len, n_micro, work.precision, stack
    )
    return _step_estimate(model, work, layout, stage_hw, costs, timing, dp_exposed, optimizer_s, memory)


def _stage_accelerators(cluster: Cluster, layout: Layout, pools: list[str]) -> list[Accelerator]:
    """The accelerator of each stage's pool; SpecError when a pool has none or too few of them."""
    if len(pools) != layout.pp:
        raise SpecError(f"stage_pools lists {len(pools)} pools for {layout.pp} pipeline stages")
    accelerators: list[Accelerator] = []
    for name in pools:
        accelerator = cluster.accelerator_of(name)
        if accelerator is None:
            raise SpecError(f"pool {name!r} has no accelerators (a CPU pool cannot train a model)")
        accelerators.append(accelerator)
    for name in dict.fromkeys(pools):
        needed = layout.world_size // layout.pp * pools.count(name)
        if needed > cluster.accelerator_count(name):
            raise SpecError(
                f"layout needs {needed} accelerators, pool {name!r} has {cluster.accelerator_count(name)}"
            )
        node = cluster.node_type_of(name)
        if not node.nics and (needed > node.accelerators_per_node or len(set(pools)) > 1):
            raise SpecError(
                f"pool {name!r}: node type {node.slug} has no NICs, a layout cannot leave one node "
                f"({needed} accelerators, {node.accelerators_per_node} per node)"
            )
    return accelerators


def _stage_kinds(
    model: ModelSpec, layout: Layout, pools: list[str], stages: list[list[int]]
) -> list[tuple[object, ...]]:
    """A key per stage: stages with the same key cost the same (most of a homogeneous pipeline)."""
    moe_counts = [sum(c for i, c in span_kinds(model, layers) if model.is_moe_layer(i)) for layers in stages]
    return [
        (
            pools[i],
            pools[i + 1] if i + 1 < layout.pp else None,
            len(stages[i]),
            moe_counts[i],
            i == 0,
            i == layout.pp - 1,
        )
        for i in range(layout.pp)
    ]


def _stage_costs(
    model: ModelSpec,
    work: Workload,
    layout: Layout,
    pools: list[str],
    stages: list[list[int]],
    kinds: list[tuple[object, ...]],
    stage_hw: list[Hardware],
    places: list[Placement],
    factors: list[float],
    moe_imbalance: float,
    stack: str,
) -> list[StageCost]:
    """Per micro-batch cost of every stage, each kind of stage computed once."""
    by_kind: dict[tuple[object, ...], StageCost] = {}
    for i, layers in enumerate(stages):
        if kinds[i] not in by_kind:
            by_kind[kinds[i]] = stage_cost(
                model,
                layers,
                i == layout.pp - 1,
                work,
                layout,
                stage_hw[i],
                places[i],
                factors[i],
                moe_imbalance,
                pools[i + 1] if i + 1 < layout.pp else None,
                stack,
            )
    return [by_kind[kind] for kind in kinds]


def _data_parallel_and_optimizer_s(
    model: ModelSpec,
    layout: Layout,
    stages: list[list[int]],
    kinds: list[tuple[object, ...]],
    costs: list[StageCost],
    places: list[Placement],
    stage_hw: list[Hardware],
    n_micro: int,
) -> tuple[float, float]:
    """Exposed data-parallel communication (gradient sync, ZeRO gathers, FSDP per micro-batch,
    each hidden behind the compute it overlaps) and the optimizer step, of the slowest stage."""
    dp_exposed = optimizer_s = 0.0
    for i in {kinds.index(kind) for kind in kinds}:
        layers, cost = stages[i], costs[i]
        params = mem.stage_params(model, layers, i == 0, i == layout.pp - 1, layout.tp, layout.ep)
        dp = data_parallel_s(places[i], layout, params.dense, params.expert)
        buckets = max(1, len(layers))
        grads = exposed_after_overlap_s(dp.grad_sync_s, cost.backward_s, buckets)
        gather = exposed_after_overlap_s(dp.param_gather_s, cost.forward_s, buckets)
        fsdp = n_micro * exposed_after_overlap_s(dp.fsdp_per_micro_s, cost.compute_s, buckets)
        dp_exposed = max(dp_exposed, grads + gather + fsdp)
        sharded = params.total / (layout.dp * layout.cp if layout.zero_stage >= 1 else 1)
        optimizer = sharded * ADAM_BYTES_PER_PARAM / (stage_hw[i].memory_bw_gb_s * 1e9) + kernel_overhead_s()
        optimizer_s = max(optimizer_s, optimizer)
    return dp_exposed, optimizer_s


def _step_estimate(
    model: ModelSpec,
    work: Workload,
    layout: Layout,
    stage_hw: list[Hardware],
    costs: list[StageCost],
    timing: PipelineTime,
    dp_exposed: float,
    optimizer_s: float,
    memory: mem.MemoryFit,
) -> StepEstimate:
    """The step time, its parts, MFU/HFU and what binds it."""
    n_micro = micro_batches(layout, work.global_batch)
    slowest = max(costs, key=lambda c: c.slot_s)
    other_s = perf_constants()["other_per_step_s"]
    step_s = timing.busy_s + timing.bubble_s + dp_exposed + optimizer_s + other_s
    tokens_per_s = work.global_batch * work.seq_len / step_s
    peak = sum(hw.mfu_peak_tflops for hw in stage_hw) / layout.pp * 1e12 * layout.world_size
    mfu = model_flops_per_token(model, work.seq_len) * tokens_per_s / peak
    hfu = hardware_flops_per_token(model, work.seq_len, layout.recompute) * tokens_per_s / peak
    exposed = {
        "tp": n_micro * slowest.tp_s,
        "cp": n_micro * slowest.cp_s,
        "ep": n_micro * slowest.ep_s,
        "pp": n_micro * slowest.pp_s,
        "dp": dp_exposed,
    }
    exposed = {k: v for k, v in exposed.items() if v > 0}
    compute_s = n_micro * slowest.compute_s
    balances = {
        "compute": compute_s + timing.bubble_s,
        "network": sum(exposed.values()),
        "memory": optimizer_s,
        "io": other_s,
    }
    binding = "memory" if not memory.fits else max(balances, key=lambda k: balances[k])
    return StepEstimate(
        step_time_s=step_s,
        compute_s=compute_s,
        exposed_comm_s=exposed,
        bubble_s=timing.bubble_s,
        optimizer_s=optimizer_s,
        other_s=other_s,
        mfu=mfu,
        hfu=hfu,
        tokens_per_s=tokens_per_s,
        memory_gb_per_gpu=memory.needed_bytes / mem.GB,
        memory_breakdown_gb={k: v / mem.GB for k, v in memory.used_bytes.items()},
        fits=memory.fits,
        binding=binding,
    )
