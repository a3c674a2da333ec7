"""Communication of each parallel dimension, timed by the collective cost model
(`suanli.comm.estimate`), with the share left exposed after overlap.

Rank order is Megatron-LM's: TP fastest, then CP, then DP (EP carved out of DP·CP), PP slowest
(megatron/core/parallel_state.py), so TP groups stay inside a node and PP crosses nodes first.
Message sizes per layer and micro-batch follow Korthikanti et al. 2022, sec. 4.2.2 (sequence
parallelism: all-gather + reduce-scatter in place of each all-reduce).
"""

from __future__ import annotations

from dataclasses import dataclass

from suanli.comm.estimate import collective_time_s, p2p_time_s
from suanli.spec.calibration import load_calibration
from suanli.spec.cluster import Cluster
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout

BYTES_16BIT = 2
GRAD_REDUCE_BYTES = 4  # Megatron reduces fp32 main grads unless --grad-reduce-in-bf16


@dataclass(frozen=True)
class Placement:
    """Where one pipeline stage's ranks sit: the cluster, the pool and accelerators per node."""

    cluster: Cluster
    pool: str
    per_node: int

    def ranks_per_node(self, group: int, stride: int) -> int:
        """Members of a group of `group` ranks spaced `stride` apart that share a node."""
        return max(1, min(group, self.per_node // stride)) if stride < self.per_node else 1

    def collective(self, name: str, message_bytes: float, group: int, stride: int) -> float:
        if group <= 1 or message_bytes <= 0:
            return 0.0
        return collective_time_s(
            self.cluster, self.pool, name, message_bytes, group, self.ranks_per_node(group, stride)
        )

    def p2p(self, message_bytes: float, same_node: bool) -> float:
        """One send to a neighbour rank of the same pool."""
        return (
            p2p_time_s(self.cluster, self.pool, self.pool, message_bytes, same_node)
            if message_bytes > 0
            else 0.0
        )


def tensor_parallel_layer_s(
    place: Placement, layout: Layout, tokens: float, hidden: int, recompute: str
) -> float:
    """TP communication of one layer and micro-batch, forward + backward (+ recomputed forward).

    Forward: 2 all-gathers + 2 reduce-scatters of the b·s·h activation with SP, or 2 all-reduces
    without; backward: the same again."""
    if layout.tp == 1:
        return 0.0
    message = tokens * hidden * BYTES_16BIT
    if layout.sequence_parallel:
        one_pass = 2 * place.collective("all_gather", message, layout.tp, 1)
        one_pass += 2 * place.collective("reduce_scatter", message, layout.tp, 1)
    else:
        one_pass = 2 * place.collective("all_reduce", message, layout.tp, 1)
    passes = 3 if recompute == "full" else 2
    return passes * one_pass


@dataclass(frozen=True)
class ContextParallelRing:
    """How a software stack runs ring attention (calibration/perf_model.yaml `context_parallel`)."""

    method: str  # "p2p": KV chunks passed around the ring; "all_gather": KV gathered once per pass
    kv_repeated: bool  # K and V widened to the query heads before attention (repeat_kv)
    grad_bytes: int  # bytes per element of the dK/dV passed around the ring in the backward pass
    merge_forward_bytes: float  # HBM bytes per output element to merge one ring step's partial result
    merge_backward_bytes: float  # ... and to accumulate one step's dQ/dK/dV


def context_parallel_ring(stack: str) -> ContextParallelRing:
    """How `stack` runs ring attention (calibration/perf_model.yaml `context_parallel`)."""
    table = load_calibration("perf_model.yaml")["context_parallel"]
    entry = table["default"] | table.get(stack, {})
    return ContextParallelRing(
        method=entry["method"],
        kv_repeated=entry["kv"] == "repeated",
        grad_bytes=entry["grad_bytes"],
        merge_forward_bytes=entry["merge_bytes"]["forward"],
        merge_backward_bytes=entry["merge_bytes"]["backward"],
    )


def ring_kv_width(model: ModelSpec, tp: int, repeated: bool) -> float:
    """Elements per token of K plus V that one TP rank holds for attention: its own KV heads (GQA
    groups; a TP rank holds at least one), or its query heads when the stack repeats K and V."""
    if model.mla:
        return (
            model.n_heads
            / tp
            * (model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim + model.mla.v_head_dim)
        )
    heads = model.n_heads / tp if repeated else max(1.0, model.kv_heads / tp)
    return 2 * heads * model.dim_per_head


def context_parallel_layer_s(
    place: Placement,
    layout: Layout,
    ring: ContextParallelRing,
    tokens: float,
    kv_width: float,
    attention_fwd_s: float,
    attention_bwd_s: float,
) -> float:
    """Exposed CP communication of one layer and micro-batch (forward, any recomputed forward,
    backward), each transfer hidden behind the attention block it overlaps.

    The causal load balancing of both stacks (Megatron-Core/TE and PyTorch: each rank holds chunks
    i and 2·cp−1−i) gives every ring step 1/cp of the rank's attention work.
    p2p (Megatron-Core `--cp-comm-type p2p`, TransformerEngine AttnFuncWithCPAndKVP2P): each of the
    cp−1 steps sends the rank's KV chunk to the next rank while computing a block; backward sends KV
    and dKV. all_gather (PyTorch `_AllGatherRotater`, torchtitan's default rotate method): the KV
    of all ranks is gathered once per pass, issued before the first block and awaited after it;
    backward gathers again and passes dK/dV around the ring in `grad_bytes` (PyTorch accumulates
    them in fp32), each send hidden behind the next block, the last one exposed."""
    if layout.cp == 1:
        return 0.0
    chunk_bytes = tokens * kv_width * BYTES_16BIT
    grad_bytes = tokens * kv_width * ring.grad_bytes
    block_fwd, block_bwd = attention_fwd_s / layout.cp, attention_bwd_s / layout.cp
    steps = layout.cp - 1
    same_node = layout.tp * layout.cp <= place.per_node
    if ring.method == "all_gather":
        gather = place.collective("all_gather", chunk_bytes * layout.cp, layout.cp, layout.tp)
        grad_send = place.p2p(grad_bytes, same_node)
        forward = max(0.0, gather - block_fwd)
        backward = max(0.0, gather - block_bwd) + steps * max(0.0, grad_send - block_bwd) + grad_send
    else:
        send = place.p2p(chunk_bytes, same_node)
        forward = steps * max(0.0, send - block_fwd)
        backward = steps * max(0.0, send + place.p2p(grad_bytes, same_node) - block_bwd)
    passes = 2 if layout.recompute == "full" else 1
    return passes * forward + backward


def ring_merge_bytes(ring: ContextParallelRing, layout: Layout, tokens: float, q_width: float) -> float:
    """HBM traffic of merging the cp partial results of one layer (forward and backward, per TP
    rank): cp−1 merges of the running output, and cp accumulations of the gradients."""
    if layout.cp == 1:
        return 0.0
    elements = tokens * q_width
    return elements * ((layout.cp - 1) * ring.merge_forward_bytes + layout.cp * ring.merge_backward_bytes)


def expert_replicas(layout: Layout) -> int:
    """Copies of each expert: experts are laid over the tp·dp·cp ranks of a stage, ep-way
    (Megatron-Core MoE with expert-tensor-parallel size 1)."""
    return max(1, layout.tp * layout.dp * layout.cp // layout.ep)


def expert_parallel_layer_s(place: Placement, layout: Layout, dispatch_bytes: float) -> float:
    """EP per MoE layer and micro-batch: dispatch + combine all-to-all forward, and both again
    for the gradients. EP groups are consecutive ranks (they include the TP ranks)."""
    if layout.ep == 1:
        return 0.0
    return 4 * place.collective("all_to_all", dispatch_bytes, layout.ep, 1)


def pipeline_p2p_s(
    place: Placement, layout: Layout, tokens: float, hidden: int, next_pool: str | None = None
) -> float:
    """One activation (or gradient) send between adjacent stages; with SP each TP rank sends its
    1/t slice (Megatron's scatter-gather optimisation, Narayanan et al. 2021, sec. 4.1)."""
    if layout.pp == 1:
        return 0.0
    message = tokens * hidden * BYTES_16BIT / (layout.tp if layout.sequence_parallel else 1)
    same_node = layout.tp * layout.cp * layout.dp < place.per_node and next_pool in (None, place.pool)
    return p2p_time_s(place.cluster, place.pool, next_pool or place.pool, message, same_node)


@dataclass(frozen=True)
class DataParallelTime:
    grad_sync_s: float  # reduce-scatter (ZeRO ≥ 1) or all-reduce (ZeRO 0) of the gradients, per step
    param_gather_s: float  # all-gather of the updated weights (ZeRO ≥ 1), per step
    fsdp_per_micro_s: float  # ZeRO-3: gathers and reduce-scatter every micro-batch


def data_parallel_s(
    place: Placement, layout: Layout, dense_params: float, expert_params: float
) -> DataParallelTime:
    """DP traffic of one stage's parameters: dense ones over dp·cp ranks, experts (not TP-sharded,
    expert-TP = 1) over tp·dp·cp/ep ranks."""
    dense_group, stride = layout.dp * layout.cp, layout.tp
    expert_group = expert_replicas(layout)
    expert_stride = layout.ep

    def collective(name: str, bytes_per_param: float) -> float:
        dense = place.collective(name, dense_params * bytes_per_param, dense_group, stride)
        experts = place.collective(name, expert_params * bytes_per_param, expert_group, expert_stride)
        return dense + experts

    if layout.zero_stage == 3:
        per_micro = 2 * collective("all_gather", BYTES_16BIT) + collective(
            "reduce_scatter", GRAD_REDUCE_BYTES
        )
        return DataParallelTime(0.0, 0.0, per_micro)
    if layout.zero_stage == 0:
        return DataParallelTime(collective("all_reduce", GRAD_REDUCE_BYTES), 0.0, 0.0)
    return DataParallelTime(
        collective("reduce_scatter", GRAD_REDUCE_BYTES), collective("all_gather", BYTES_16BIT), 0.0
    )


def exposed_after_overlap_s(comm_s: float, window_s: float, buckets: int) -> float:
    """What a bucketed collective leaves exposed when it overlaps `window_s` of compute: at least
    its last bucket (Megatron --overlap-grad-reduce, PyTorch DDP/FSDP)."""
    return max(comm_s / max(1, buckets), comm_s - window_s)
