"""Matmul FLOPs of a decoder-only transformer, per token, layer by layer.

Counted like torchtitan's and PaLM's (Chowdhery et al. 2022, appendix B) formulas, but exactly
per matrix instead of `6N`: a (m×k)·(k×n) product is 2·m·k·n FLOPs; the backward pass costs twice
the forward (one product for the input gradient, one for the weight gradient). Norms, softmax,
activations and the optimizer are memory-bound and not counted, as in every source.

Attention convention: scores (QKᵀ) and the weighted sum (AV) are counted over the *full* sequence,
ignoring the causal mask, as Megatron-LM (Narayanan et al. 2021, eq. 3), PaLM, torchtitan and
llm-foundry do; pass `causal=True` for the halved count some reports (DeepSeek-V3) use.

Recomputation (HFU basis): `full` re-runs each layer's forward once more in the backward pass
(Narayanan et al. 2021: 4× instead of 3× the forward FLOPs); `selective` re-runs only the attention
core (QKᵀ, softmax, AV), per Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", sec. 5. The LM head is never recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suanli.spec.model import ModelSpec

RECOMPUTE_MODES = ("none", "selective", "full")
TRAIN_PASSES = 3  # forward + backward (input gradient + weight gradient)


@dataclass(frozen=True)
class LayerFlops:
    """Forward FLOPs per token of one transformer layer, by part."""

    attention_linear: float  # Q, K, V (and MLA down/up) projections and the output projection
    attention_core: float  # QKᵀ and AV over the sequence
    mlp: float  # dense MLP, or the shared + routed experts a token visits
    router: float  # MoE gate

    @property
    def total(self) -> float:
        return self.attention_linear + self.attention_core + self.mlp + self.router


def attention_linear_flops(model: ModelSpec) -> float:
    """Forward FLOPs per token of the attention projections (GQA: K and V have kv_heads heads)."""
    h = model.hidden
    if model.mla:
        m = model.mla
        qk_dim = m.qk_nope_head_dim + m.qk_rope_head_dim
        q = (
            h * m.q_lora_rank + m.q_lora_rank * model.n_heads * qk_dim
            if m.q_lora_rank
            else h * model.n_heads * qk_dim
        )
        kv_down = h * (m.kv_lora_rank + m.qk_rope_head_dim)
        kv_up = m.kv_lora_rank * model.n_heads * (m.qk_nope_head_dim + m.v_head_dim)
        out = model.n_heads * m.v_head_dim * h
        return 2.0 * (q + kv_down + kv_up + out)
    q_dim = model.n_heads * model.dim_per_head
    kv_dim = model.kv_heads * model.dim_per_head
    return 2.0 * (h * q_dim + 2 * h * kv_dim + q_dim * h)


def attention_core_flops(model: ModelSpec, seq_len: int, causal: bool = False) -> float:
    """Forward FLOPs per token of QKᵀ and AV: each query meets `seq_len` keys (half, if causal)."""
    if model.mla:
        score_dim = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        value_dim = model.mla.v_head_dim
    else:
        score_dim = value_dim = model.dim_per_head
    keys = seq_len / 2 if causal else seq_len
    return 2.0 * keys * model.n_heads * (score_dim + value_dim)


def mlp_flops(model: ModelSpec, ffn_hidden: int) -> float:
    """Forward FLOPs per token of one MLP: 3 matrices if gated (SwiGLU), else 2."""
    matrices = 3 if model.gated_mlp else 2
    return 2.0 * matrices * model.hidden * ffn_hidden


def layer_flops(model: ModelSpec, index: int, seq_len: int, causal: bool = False) -> LayerFlops:
    """Forward FLOPs per token of layer `index` (dense or MoE)."""
    attn = attention_linear_flops(model)
    core = attention_core_flops(model, seq_len, causal)
    if not model.is_moe_layer(index):
        return LayerFlops(attn, core, mlp_flops(model, model.ffn_hidden), 0.0)
    moe = model.moe
    assert moe is not None
    experts = (moe.top_k + moe.shared_experts) * mlp_flops(model, moe.expert_ffn_hidden)
    return LayerFlops(attn, core, experts, 2.0 * model.hidden * moe.experts)


def lm_head_flops(model: ModelSpec) -> float:
    """Forward FLOPs per token of the output projection to the vocabulary (the input lookup is free)."""
    return 2.0 * model.hidden * model.vocab


def mtp_flops(model: ModelSpec, seq_len: int, causal: bool = False) -> float:
    """Forward FLOPs per token of DeepSeek-V3's multi-token-prediction modules: each one is a
    projection of [h; emb] (2h → h), one transformer layer like the last one, and the shared head."""
    if not model.mtp_modules:
        return 0.0
    per_module = 2.0 * 2 * model.hidden * model.hidden
    per_module += layer_flops(model, model.n_layers - 1, seq_len, causal).total + lm_head_flops(model)
    return model.mtp_modules * per_module


def span_kinds(model: ModelSpec, layers: Sequence[int]) -> list[tuple[int, int]]:
    """(a representative index, how many) of the dense and of the MoE layers among the contiguous
    `layers`: layers of one kind are identical, so each kind is computed once."""
    if not layers:
        return []
    start, end = layers[0], layers[-1] + 1
    if model.moe is None:
        return [(start, end - start)]
    first, every = model.moe.first_dense_layers, model.moe.every
    low = max(start, first)
    moe = max(0, -(-(end - first) // every) - -(-(low - first) // every)) if end > low else 0
    first_moe = first + -(-(low - first) // every) * every
    dense = end - start - moe
    first_dense = next((i for i in range(start, end) if not model.is_moe_layer(i)), start) if dense else start
    return [(index, count) for index, count in ((first_dense, dense), (first_moe, moe)) if count]


def layer_kinds(model: ModelSpec) -> list[tuple[int, int]]:
    """`span_kinds` of the whole model."""
    return span_kinds(model, range(model.n_layers))


def forward_flops_per_token(model: ModelSpec, seq_len: int, causal: bool = False) -> float:
    """Forward-pass matmul FLOPs per token: all layers, the LM head and any MTP modules."""
    layers = sum(count * layer_flops(model, i, seq_len, causal).total for i, count in layer_kinds(model))
    return layers + lm_head_flops(model) + mtp_flops(model, seq_len, causal)


def model_flops_per_token(model: ModelSpec, seq_len: int, causal: bool = False) -> float:
    """Training (forward + backward) model FLOPs per token without recomputation: the MFU basis.

    Attention over the full sequence unless `causal` (see the module docstring)."""
    return TRAIN_PASSES * forward_flops_per_token(model, seq_len, causal)


def recompute_flops_per_token(model: ModelSpec, seq_len: int, recompute: str, causal: bool = False) -> float:
    """Extra forward FLOPs per token spent re-running activations in the backward pass."""
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute: expected one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    if recompute == "none":
        return 0.0
    kinds = [(layer_flops(model, i, seq_len, causal), count) for i, count in layer_kinds(model)]
    if recompute == "selective":
        return sum(layer.attention_core * count for layer, count in kinds)
    return sum(layer.total * count for layer, count in kinds)


def hardware_flops_per_token(model: ModelSpec, seq_len: int, recompute: str, causal: bool = False) -> float:
    """Training FLOPs per token the hardware executes, recomputation included: the HFU basis.

    With `full` recompute and a GPT-style model this is Megatron's 96·B·s·l·h²·(1 + s/6h + V/16lh)
    per B·s tokens (Narayanan et al. 2021, eq. 3)."""
    return model_flops_per_token(model, seq_len, causal) + recompute_flops_per_token(
        model, seq_len, recompute, causal
    )


def megatron_flops_per_token(n_layers: int, hidden: int, seq_len: int, vocab: int) -> float:
    """Narayanan et al. 2021, eq. 3, per token: 96·l·h²·(1 + s/6h + V/16lh) — GPT with an
    ungated 4h MLP, MHA and full recomputation. Kept as the published reference formula."""
    return 96.0 * n_layers * hidden**2 * (1 + seq_len / (6 * hidden) + vocab / (16 * n_layers * hidden))
