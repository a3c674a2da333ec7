"""Memory per accelerator of one training layout: model states, activations, and a reserve.

Model states (bytes per parameter, mixed precision with Adam) follow the table of Megatron-LM's
distributed-optimizer docs (docs/source/api-guide/dist_optimizer.md): 16-bit weights (2),
fp32 main gradients (4), fp32 master weights + Adam moments (12); ZeRO stage 1/2/3 (Rajbhandari
et al. 2020) shard the last group, then the gradients, then the weights over the data-parallel
ranks — stage 1 is Megatron's distributed optimizer, stage 3 is FSDP FULL_SHARD. Fully sharded,
the states are the ZeRO paper's 16 bytes per parameter (sec. 3.1: 2 + 2 + 12): FSDP keeps fp32
parameter and gradient shards and the Adam moments (4 + 4 + 8), DeepSpeed 16-bit parameter and
gradient shards and 12 bytes of optimizer state — either way no fp32 gradient beside a 16-bit
weight shard.

Activations per layer follow Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", sec. 4: 34·s·b·h + 5·a·s²·b bytes for a GPT layer, divided by t with
tensor and sequence parallelism. We count the same stored tensors for any shape (GQA, gated MLP,
MoE), drop the s² terms under FlashAttention (no score matrix is stored) and the dropout masks when
dropout is off, as in today's LLM pre-training. Selective recompute under FlashAttention has no
score matrix left to drop; what frameworks recompute instead is the cheap pointwise work — the
norms and the MLP's activation function (torchtitan's selective op policy saves matmul and
attention outputs only; Megatron-Core's `--recompute-modules layernorm moe_act`) — so their
outputs are not stored.

`pipeline_fit` is the one memory-fit rule (the planner's pruning, the heterogeneous planner and the
step estimate all use it). FP8 is decided once, by `runs_fp8`: an FP8 run keeps TransformerEngine's
extra 1-byte copy of each linear weight only on accelerators with FP8 tensor cores; elsewhere the
job trains its linear layers in 16 bits and holds no FP8 copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanli.perf.calibration import STACK_AGNOSTIC
from suanli.perf.comm import context_parallel_ring, ring_kv_width
from suanli.perf.flops import span_kinds
from suanli.spec.accelerator import Accelerator
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout

GB = 1e9
BYTES_16BIT = 2
WEIGHT_BYTES = 2  # bf16/fp16 working copy
GRAD_BYTES = 4  # fp32 main gradients (Megatron default, FSDP with fp32 reduce)
OPTIMIZER_BYTES = 12  # fp32 master weights + Adam m and v
ZERO3_GRAD_BYTES = 2  # fully sharded: 16 bytes per parameter in all (Rajbhandari et al. 2020, sec. 3.1)
FP8_WEIGHT_BYTES = 1  # TransformerEngine keeps an fp8 copy of each linear weight
RESERVE_FIXED_GB = 2.0  # CUDA context, cuBLAS/NCCL workspaces (PyTorch + NCCL defaults)
RESERVE_FRACTION = 0.05  # caching-allocator fragmentation


@dataclass(frozen=True)
class StageParams:
    """Parameters one accelerator of a pipeline stage holds (after TP/EP sharding, before ZeRO)."""

    dense: float  # attention, dense MLPs, norms, embeddings: sharded by TP
    expert: float  # routed experts: sharded by EP
    largest_layer: float  # for FSDP's gathered-weights buffer

    @property
    def total(self) -> float:
        return self.dense + self.expert


def stage_params(
    model: ModelSpec, layers: list[int], first: bool, last: bool, tp: int, ep: int
) -> StageParams:
    """Parameters on one accelerator of the stage that runs `layers` (indices)."""
    dense = expert = largest = 0.0
    for index, count in span_kinds(model, layers):
        moe_layer = model.is_moe_layer(index)
        total = model.layer_params(index)
        routed = 0.0
        if moe_layer:
            assert model.moe is not None
            routed = model.moe.experts * model.mlp_params(model.moe.expert_ffn_hidden)
        dense += count * (total - routed) / tp
        expert += count * routed / ep
        largest = max(largest, (total - routed) / tp + routed / ep)
    table = model.vocab * model.hidden / tp
    if first:
        dense += table
    if last:
        dense += table if not model.tied_embeddings or not first else 0.0
        dense += model.hidden
    return StageParams(dense, expert, largest)


def model_state_bytes(params: StageParams, layout: Layout, fp8: bool) -> dict[str, float]:
    """Weights, gradients and optimizer state per accelerator for the layout's ZeRO stage.

    Dense parameters are replicated over dp·cp ranks and experts over tp·dp·cp/ep, so each shards
    its states over that many ranks."""
    dense_ranks = layout.dp * layout.cp
    expert_ranks = max(1, layout.tp * dense_ranks // layout.ep)
    zero = layout.zero_stage

    def per_group(count: float, ranks: int) -> tuple[float, float, float]:
        weights = count * (WEIGHT_BYTES + (FP8_WEIGHT_BYTES if fp8 else 0))
        grads = count * GRAD_BYTES
        optim = count * OPTIMIZER_BYTES
        if zero >= 1:
            optim /= ranks
        if zero >= 2:
            grads /= ranks
        if zero >= 3:
            weights /= ranks
            grads *= ZERO3_GRAD_BYTES / GRAD_BYTES
        return weights, grads, optim

    dw, dg, do = per_group(params.dense, dense_ranks)
    ew, eg, eo = per_group(params.expert, expert_ranks)
    states = {"weights": dw + ew, "gradients": dg + eg, "optimizer": do + eo}
    if zero >= 3:
        # FSDP gathers a layer's full weights for compute and prefetches the next one.
        states["weights"] += 2 * params.largest_layer * WEIGHT_BYTES
    return states


def layer_activation_bytes(
    model: ModelSpec,
    index: int,
    seq_len: int,
    micro_batch: int,
    tp: int,
    cp: int,
    sequence_parallel: bool,
    recompute: str,
    flash_attention: bool = True,
    dropout: bool = False,
    stack: str = STACK_AGNOSTIC,
) -> float:
    """Activation bytes one layer keeps for the backward pass, per accelerator, one micro-batch.

    Korthikanti et al. 2022, eq. 2 generalised: with a GPT shape, MHA, dropout and no
    FlashAttention it is s·b·h·(34 + 5·a·s/h) for t = 1."""
    s = seq_len / cp
    sb = s * micro_batch
    h = model.hidden
    if recompute == "full":
        return 2 * sb * h / (tp if sequence_parallel else 1)  # only the layer input
    if recompute == "selective" and stack in SAVES_EVERY_OTHER_MATMUL and not model.is_moe_layer(index):
        return sb * every_other_matmul_bytes_per_token(model, tp, sequence_parallel)
    q = model.n_heads * model.dim_per_head
    kv = model.kv_heads * model.dim_per_head
    drop = 1 if dropout else 0
    # Replicated across TP ranks unless sequence parallel: norm inputs (2·2h), block inputs (2·2h)
    # and the two dropout masks (2·h).
    selective = recompute == "selective"
    norms = 0 if selective else 4 * h
    replicated = norms + 4 * h + 2 * drop * h
    # Split across TP ranks: Q, K, V and the attention output (input of the output projection).
    split: float = 2 * q + 4 * kv + 2 * q
    if not flash_attention and recompute != "selective":
        split += (5 if drop else 2) * model.n_heads * s  # softmax output (+ dropout mask and output)
    if model.is_moe_layer(index):
        moe = model.moe
        assert moe is not None
        visits = moe.top_k + moe.shared_experts
        per_expert = mlp_stored_bytes_per_token(model.gated_mlp, moe.expert_ffn_hidden, selective)
        split += visits * (2 * h + per_expert) + 4 * moe.experts  # dispatched inputs, expert MLPs, router
    else:
        split += mlp_stored_bytes_per_token(model.gated_mlp, model.ffn_hidden, selective)
    replicated_div = tp if sequence_parallel else 1
    return sb * (replicated / replicated_div + split / tp)


# Stacks whose selective recompute is an op policy that saves the outputs of every other matmul, of
# the attention kernel and of the TP reduce-scatters, and recomputes the rest (torchtitan's
# selective_ac_option "op", the default of its Llama presets: torchtitan activation checkpointing,
# `_save_list` and "Saves output of all compute ops, except every second mm").
SAVES_EVERY_OTHER_MATMUL = frozenset({"torchtitan"})


def every_other_matmul_bytes_per_token(model: ModelSpec, tp: int, sequence_parallel: bool) -> float:
    """16-bit bytes per token a dense layer keeps under torchtitan's op policy: of its matmuls in
    call order (wq, wk, wv, wo, w1, w3, w2) the 1st, 3rd, 5th and 7th outputs — Q, V, the gate
    projection and the row-parallel w2 output (whole hidden width before its reduce-scatter) — the
    attention output and its fp32 log-sum-exp, the TP reduce-scatter outputs and the layer input."""
    h = model.hidden
    q = model.n_heads * model.dim_per_head / tp
    v = max(1.0, model.kv_heads / tp) * model.dim_per_head
    gate = model.ffn_hidden / tp
    lse = 2 * model.n_heads / tp  # fp32: 4 bytes, counted here in 16-bit units
    scattered = 2 * h / tp if tp > 1 else 0.0
    layer_input = h / (tp if sequence_parallel else 1)
    return BYTES_16BIT * (q + v + gate + h + q + lse + scattered + layer_input)


def mlp_stored_bytes_per_token(gated: bool, ffn_hidden: int, selective: bool) -> int:
    """16-bit MLP tensors kept per token: the up-projection output(s), and the activation output
    (the down-projection's input) unless selective recompute rebuilds it from them."""
    up = (2 if gated else 1) * 2 * ffn_hidden
    return up if selective else up + 2 * ffn_hidden


def korthikanti_layer_activation_bytes(
    seq_len: int, micro_batch: int, hidden: int, heads: int, tp: int
) -> float:
    """The published closed form (Korthikanti et al. 2022, Table 2, TP + SP, no recompute):
    s·b·h·(34/t + 5·a·s/(h·t))."""
    s, b, h, a = seq_len, micro_batch, hidden, heads
    return s * b * h * (34 / tp + 5 * a * s / (h * tp))


# Bytes per vocabulary logit the last stage holds at the loss's peak, by software stack. Megatron-Core's
# fused vocab-parallel cross entropy (megatron/core/tensor_parallel/cross_entropy.py) keeps the 16-bit
# logits and one fp32 softmax it overwrites in place with the gradient: 2 + 4. PyTorch's
# F.cross_entropy on `logits.float()` (torchtitan's loss, run eagerly) saves the fp32 log-softmax for
# the backward pass; log_softmax's backward then reads it and the fp32 gradient nll_loss's backward
# wrote, and writes a third fp32 tensor: 3 · 4 at the start of the backward pass.
LOSS_BYTES_PER_LOGIT = {"torchtitan": 12}
DEFAULT_LOSS_BYTES_PER_LOGIT = 6


def logits_bytes(
    model: ModelSpec, seq_len: int, micro_batch: int, tp: int, cp: int, stack: str = STACK_AGNOSTIC
) -> float:
    """The last stage's vocabulary logits and loss buffers at their peak (LOSS_BYTES_PER_LOGIT)."""
    per_logit = LOSS_BYTES_PER_LOGIT.get(stack, DEFAULT_LOSS_BYTES_PER_LOGIT)
    return seq_len / cp * micro_batch * model.vocab / tp * per_logit


def ring_buffer_bytes(model: ModelSpec, layout: Layout, seq_len: int, stack: str = STACK_AGNOSTIC) -> float:
    """What an all-gather ring holds while one layer's attention runs: every CP rank's K/V (16-bit,
    gathered once per pass by PyTorch's _AllGatherRotater) and the fp32 dQ, dK, dV accumulators of
    the rank's own tokens (_templated_ring_attention_backward with convert_to_f32)."""
    ring = context_parallel_ring(stack)
    if layout.cp == 1 or ring.method != "all_gather":
        return 0.0
    tokens = seq_len / layout.cp * layout.micro_batch
    kv = ring_kv_width(model, layout.tp, ring.kv_repeated)
    q = model.n_heads / layout.tp * model.dim_per_head
    return layout.cp * tokens * kv * BYTES_16BIT + tokens * (q + kv) * 4


def in_flight_micro_batches(layout: Layout, n_micro: int) -> float:
    """Micro-batches whose activations the first pipeline stage holds at its peak.

    1F1B keeps up to pp in flight (Narayanan et al. 2021, sec. 2.2.1); the interleaved schedule
    adds a factor (1 + (pp−1)/(pp·vpp)) (Korthikanti et al. 2022, sec. 4.2.3)."""
    if layout.pp == 1:
        return 1.0
    held = float(min(n_micro, layout.pp))
    if layout.vpp > 1:
        held *= 1 + (layout.pp - 1) / (layout.pp * layout.vpp)
    return held


def reserve_bytes(capacity_gb: float) -> float:
    """Memory not available to the model: workspaces, context and fragmentation."""
    return (RESERVE_FIXED_GB + RESERVE_FRACTION * capacity_gb) * GB


def runs_fp8(accelerator: Accelerator, precision: str) -> bool:
    """Whether a run in `precision` uses FP8 linear layers on `accelerator` (only where it has FP8)."""
    return precision == "fp8" and accelerator.peak("fp8") is not None


def stage_memory_bytes(
    model: ModelSpec,
    layers: list[int],
    stage: int,
    layout: Layout,
    seq_len: int,
    n_micro: int,
    accelerator: Accelerator,
    precision: str,
    stack: str = STACK_AGNOSTIC,
) -> dict[str, float]:
    """Memory of one accelerator of pipeline stage `stage`: model states, activations of the
    micro-batches in flight (stage i of 1F1B holds pp − i), the logits, and the reserve."""
    first, last = stage == 0, stage == layout.pp - 1
    params = stage_params(model, layers, first, last, layout.tp, layout.ep)
    states = model_state_bytes(params, layout, runs_fp8(accelerator, precision))
    mb, tp, cp, sp = layout.micro_batch, layout.tp, layout.cp, layout.sequence_parallel
    per_micro = sum(
        count * layer_activation_bytes(model, index, seq_len, mb, tp, cp, sp, layout.recompute, stack=stack)
        for index, count in span_kinds(model, layers)
        if count
    )
    activations = per_micro * max(1.0, in_flight_micro_batches(layout, n_micro) - stage)
    # Beyond what is stored, two transients that never coexist: the loss's buffers (forward end and
    # backward start, before any layer is recomputed) and, under full recompute, the layer being
    # recomputed, whole again (the loss's buffers are freed by then).
    loss = logits_bytes(model, seq_len, mb, tp, cp, stack) if last else 0.0
    recomputed = 0.0
    if layout.recompute == "full" and layers:
        recomputed = layer_activation_bytes(model, layers[-1], seq_len, mb, tp, cp, sp, "none")
        recomputed += ring_buffer_bytes(model, layout, seq_len, stack)
    activations += max(loss, recomputed)
    assert accelerator.memory_gb is not None
    return {**states, "activations": activations, "reserve": reserve_bytes(accelerator.memory_gb)}


@dataclass(frozen=True)
class MemoryFit:
    """The fullest accelerator of a pipeline (by share of its capacity): what it needs, by part."""

    stage: int
    used_bytes: dict[str, float]
    capacity_bytes: float

    @property
    def needed_bytes(self) -> float:
        return sum(self.used_bytes.values())

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.capacity_bytes


def pipeline_fit(
    model: ModelSpec,
    layout: Layout,
    layer_counts: list[int],
    accelerators: list[Accelerator],
    seq_len: int,
    n_micro: int,
    precision: str,
    stack: str = STACK_AGNOSTIC,
) -> MemoryFit:
    """The memory-fit rule: stage i runs `layer_counts[i]` layers on `accelerators[i]`. The fullest
    accelerator is the first stage of each run of one accelerator type (the most micro-batches in
    flight, 1F1B) or the last stage (the logits); the others hold less."""
    worst: MemoryFit | None = None
    start = 0
    for stage, count in enumerate(layer_counts):
        accelerator = accelerators[stage]
        boundary = stage in (0, layout.pp - 1) or accelerator.slug != accelerators[stage - 1].slug
        if boundary:
            layers = list(range(start, start + count))
            used = stage_memory_bytes(
                model, layers, stage, layout, seq_len, n_micro, accelerator, precision, stack
            )
            assert accelerator.memory_gb is not None
            fit = MemoryFit(stage, used, accelerator.memory_gb * GB)
            if (
                worst is None
                or fit.needed_bytes / fit.capacity_bytes > worst.needed_bytes / worst.capacity_bytes
            ):
                worst = fit
        start += count
    assert worst is not None
    return worst
