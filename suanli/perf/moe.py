"""Mixture-of-experts as its own model: grouped expert GEMMs, dispatch/combine all-to-all, and
load imbalance.

With expert parallelism `ep`, each rank holds experts/ep experts; the tokens of the ep ranks of a
group are exchanged so every token meets its top-k experts (GShard, Lepikhin et al. 2020;
Megatron-Core MoE). Each rank then runs one small GEMM per local expert ("grouped GEMM"), whose
row count — tokens × top_k × ep / experts — is what makes MoE layers less efficient than dense
ones (DeepSeek-V3 on H100 reaches ~17 % MFU in BF16: NVIDIA dgxc-benchmarking).
"""

from __future__ import annotations

from suanli.perf.compute import Hardware, gemm_time_s
from suanli.spec.model import ModelSpec

BALANCED = 1.0  # Megatron-Bridge benchmarks force-balance routing ("dropless", sec. notes of the runs)
LEARNED_ROUTING = 1.2  # assumption: max/mean expert load per rank with auxiliary-loss balancing


def tokens_per_expert(model: ModelSpec, tokens: float, ep: int) -> float:
    """Mean rows each local expert GEMM gets: the group's tokens × top_k spread over all experts."""
    assert model.moe is not None
    return tokens * model.moe.top_k * ep / model.moe.experts


def expert_forward_time_s(
    model: ModelSpec, tokens: float, ep: int, hw: Hardware, imbalance: float = BALANCED
) -> float:
    """Forward time of the routed experts on one rank for `tokens` tokens routed from this rank.

    The busiest rank sets the pace: its load is `imbalance` × the mean (max/mean expert load)."""
    moe = model.moe
    assert moe is not None
    local_experts = max(1, moe.experts // ep)
    rows = tokens_per_expert(model, tokens, ep) * imbalance
    up = 2 * moe.expert_ffn_hidden if model.gated_mlp else moe.expert_ffn_hidden
    per_expert = gemm_time_s(rows, up, model.hidden, hw, fp8=hw.fp8)
    per_expert += gemm_time_s(rows, model.hidden, moe.expert_ffn_hidden, hw, fp8=hw.fp8)
    return local_experts * per_expert


def dispatch_bytes(model: ModelSpec, tokens: float, fp8: bool = False) -> float:
    """Bytes one rank sends in one dispatch (or combine) all-to-all: top_k copies of each hidden
    state (FP8 dispatch halves it, as DeepSeek-V3 does; combine stays 16-bit)."""
    assert model.moe is not None
    return tokens * model.moe.top_k * model.hidden * (1 if fp8 else 2)
