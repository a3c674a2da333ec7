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
from suanli.perf.calibration import efficiency_factor
from suanli.perf.comm import (
    Placement,
    context_parallel_layer_s,
    data_parallel_s,
    expert_parallel_layer_s,
    exposed_after_overlap_s,
    pipeline_p2p_s,
    tensor_parallel_layer_s,
)
from suanli.perf.compute import (
    Hardware,
    hardware,
    kernel_overhead_s,
    layer_time,
    lm_head_time_s,
    perf_constants,
)
from suanli.perf.flops import hardware_flops_per_token, model_flops_per_token, span_kinds
from suanli.perf.moe import LEARNED_ROUTING, dispatch_bytes, expert_forward_time_s
from suanli.perf.pipeline import pipeline_time, split_layers, stage_layer_indices
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
) -> StageCost:
    """Time per micro-batch of one stage: its layers (each kind computed once), the LM head on
    the last stage, and the exposed TP/CP/EP/PP communication."""
    tokens = micro_tokens(layout, work)
    exposed = perf_constants()["exposed_fraction"]
    routed = tokens / layout.tp if layout.sequence_parallel else tokens
    tp_layer = tensor_parallel_layer_s(place, layout, tokens, model.hidden, layout.recompute)
    cp_layer = context_parallel_layer_s(place, layout, tokens, model.kv_heads * model.dim_per_head)
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
        )
        compute += count * t.total_s / efficiency
        forward += count * t.forward_s / efficiency
        if moe_layer:
            ep += count * expert_parallel_layer_s(place, layout, dispatch_bytes(model, routed, hw.fp8))
    if last:
        head = lm_head_time_s(model, tokens, layout.tp, hw) / efficiency
        compute += head
        forward += head / 3
    sends = 2  # activation forward, gradient backward; interleaved stages overlap their extra sends
    pp = sends * pipeline_p2p_s(place, layout, tokens, model.hidden, next_pool)
    return StageCost(
        compute_s=compute,
        forward_s=forward,
        tp_s=len(layers) * tp_layer * exposed["tp"],
        cp_s=len(layers) * cp_layer * exposed["cp"],
        ep_s=ep * exposed["ep"],
        pp_s=pp * exposed["pp"],
    )


def stage_memory_bytes(
    model: ModelSpec,
    layers: list[int],
    stage: int,
    work: Workload,
    layout: Layout,
    accelerator: Accelerator,
    fp8: bool,
) -> dict[str, float]:
    """Memory of one accelerator of pipeline stage `stage`: model states, activations of the
    micro-batches in flight (stage i of 1F1B holds pp − i), the logits, and the reserve."""
    first, last = stage == 0, stage == layout.pp - 1
    params = mem.stage_params(model, layers, first, last, layout.tp, layout.ep)
    states = mem.model_state_bytes(params, layout, fp8)
    n_micro = micro_batches(layout, work.global_batch)
    per_micro = 0.0
    for index, count in span_kinds(model, layers):
        if count:
            per_micro += count * mem.layer_activation_bytes(
                model,
                index,
                work.seq_len,
                layout.micro_batch,
                layout.tp,
                layout.cp,
                layout.sequence_parallel,
                layout.recompute,
            )
    in_flight = max(1.0, mem.in_flight_micro_batches(layout, n_micro) - stage)
    activations = per_micro * in_flight
    if layout.recompute == "full" and layers:  # the layer being recomputed is whole again
        activations += mem.layer_activation_bytes(
            model,
            layers[-1],
            work.seq_len,
            layout.micro_batch,
            layout.tp,
            layout.cp,
            layout.sequence_parallel,
            "none",
        )
    if last:
        activations += mem.logits_bytes(model, work.seq_len, layout.micro_batch, layout.tp, layout.cp)
    assert accelerator.memory_gb is not None
    return {**states, "activations": activations, "reserve": mem.reserve_bytes(accelerator.memory_gb)}


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
    stack: str = "megatron",
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
    moe_counts = [sum(c for i, c in span_kinds(model, layers) if model.is_moe_layer(i)) for layers in stages]

    # stages with the same key cost the same (most of a homogeneous pipeline)
    kinds = [
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

    costs_by_kind: dict[tuple[object, ...], StageCost] = {}
    costs = []
    for i, layers in enumerate(stages):
        if kinds[i] not in costs_by_kind:
            costs_by_kind[kinds[i]] = stage_cost(
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
            )
        costs.append(costs_by_kind[kinds[i]])
    timing = pipeline_time([c.slot_s for c in costs], n_micro, layout.vpp)
    slowest = max(costs, key=lambda c: c.slot_s)

    dp_exposed = optimizer_s = 0.0
    memory_by_stage: dict[int, dict[str, float]] = {}
    seen: set[tuple[object, ...]] = set()
    for i, (layers, cost) in enumerate(zip(stages, costs, strict=True)):
        if kinds[i] in seen:
            continue
        seen.add(kinds[i])
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
        # the first stage of each pool's run holds the most micro-batches in flight
        if i == 0 or i == layout.pp - 1 or pools[i] != pools[i - 1]:
            used = stage_memory_bytes(model, layers, i, work, layout, accelerators[i], stage_hw[i].fp8)
            memory_by_stage[i] = used

    usage = {i: sum(b.values()) / mem.GB / stage_hw[i].memory_gb for i, b in memory_by_stage.items()}
    worst = max(usage, key=usage.__getitem__)
    memory_gb = sum(memory_by_stage[worst].values()) / mem.GB
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
    fits = all(u <= 1.0 for u in usage.values())
    balances = {
        "compute": compute_s + timing.bubble_s,
        "network": sum(exposed.values()),
        "memory": optimizer_s,
    }
    balances["io"] = other_s
    binding = "memory" if not fits else max(balances, key=lambda k: balances[k])
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
        memory_gb_per_gpu=memory_gb,
        memory_breakdown_gb={k: v / mem.GB for k, v in memory_by_stage[worst].items()},
        fits=fits,
        binding=binding,
    )
