"""A Llama-style decoder built from a `ModelSpec`: GQA, RoPE, SwiGLU or plain MLP, RMSNorm, optional MoE.

Parameter for parameter it matches `ModelSpec.param_count()`, so the planner's FLOP and memory
models describe exactly the network that runs here. Layers and experts are held in dicts keyed by
their global index, so a pipeline stage or an expert-parallel rank that keeps only its own part
still names every parameter as the whole model does (checkpoints reshard across layouts).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from suanli.runtime.config import MoEOptions
from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec

ROPE_THETA = 10_000.0  # RoFormer (Su et al., 2021) base frequency
INIT_STD = 0.02


def rope_tables(seq_len: int, head_dim: int, theta: float = ROPE_THETA) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine of the rotary angles, each (seq_len, head_dim / 2)."""
    inverse_frequency = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inverse_frequency)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (even, odd) of x (batch, heads, seq, head_dim) by the position's angle."""
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(batch, heads, seq, head_dim) each; k and v may have fewer (grouped) heads."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.shape[1] != q.shape[1])


class Attention(nn.Module):
    """`core` is the attention kernel: causal SDPA here; context parallelism swaps in ring attention."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = spec.n_heads, spec.kv_heads, spec.dim_per_head
        qkv_bias = spec.linear_bias or spec.qkv_bias
        self.wq = nn.Linear(spec.hidden, self.n_heads * self.head_dim, bias=qkv_bias)
        self.wk = nn.Linear(spec.hidden, self.kv_heads * self.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(spec.hidden, self.kv_heads * self.head_dim, bias=qkv_bias)
        self.wo = nn.Linear(self.n_heads * self.head_dim, spec.hidden, bias=spec.linear_bias)
        self.core = causal_attention

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        cos, sin = cos[:seq], sin[:seq]  # the tables start at this rank's first position
        # -1 heads: under tensor parallelism each rank holds n_heads / tp of them
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = self.core(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class MLP(nn.Module):
    """SwiGLU (Shazeer, 2020) when gated, else a plain two-matrix GELU MLP."""

    def __init__(self, hidden: int, ffn_hidden: int, gated: bool, bias: bool) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn_hidden, bias=bias)
        self.w3 = nn.Linear(hidden, ffn_hidden, bias=bias) if gated else None
        self.w2 = nn.Linear(ffn_hidden, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w3 is None:
            return self.w2(F.gelu(self.w1(x)))
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class BalanceLossGradient(torch.autograd.Function):
    """Identity on the layer output whose backward also seeds the load-balance loss's gradient, so the
    loss reaches the router without being threaded through the model's outputs (a pipeline stage
    returns activations only). Megatron-LM's `MoEAuxLossAutoScaler` does the same."""

    @staticmethod
    def forward(ctx, output: torch.Tensor, balance_loss: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(balance_loss)
        ctx.scale = scale
        return output

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (balance_loss,) = ctx.saved_tensors
        return grad, torch.full_like(balance_loss, ctx.scale), None


def switch_balance_loss(probs: torch.Tensor, chosen: torch.Tensor, experts: int) -> torch.Tensor:
    """Switch Transformer (Fedus et al., 2022, eq. 4) for top-k: experts · Σ_i f_i · P_i, with f_i the
    share of routed (token, slot) pairs sent to expert i and P_i its mean router probability."""
    dispatched = torch.zeros(experts, device=probs.device).index_add_(
        0, chosen.flatten(), torch.ones(chosen.numel(), device=probs.device)
    )
    return experts * (dispatched / chosen.numel() * probs.float().mean(dim=0)).sum()


def within_capacity(chosen: torch.Tensor, experts: int, capacity_factor: float | None) -> torch.Tensor:
    """Which (token, slot) assignments an expert accepts: the first `capacity` in token order, with
    capacity = ⌈factor · tokens · top_k / experts⌉ (GShard/Switch token dropping); all when None."""
    if capacity_factor is None:
        return torch.ones_like(chosen, dtype=torch.bool)
    capacity = math.ceil(capacity_factor * chosen.numel() / experts)
    one_hot = F.one_hot(chosen.flatten(), experts)
    position = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1) - 1  # arrival order at its expert
    return (position < capacity).view_as(chosen)


class ExpertDispatch(Protocol):
    def __call__(
        self, tokens: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, experts: nn.ModuleDict
    ) -> torch.Tensor:
        """Σ over each token's (expert, weight) of weight · expert(token), shape of `tokens`; an
        expert index of -1 marks an assignment dropped for capacity."""
        ...


def local_dispatch(
    tokens: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, experts: nn.ModuleDict
) -> torch.Tensor:
    """Every expert on this process: gather its tokens, run it, scatter the weighted output back."""
    out = torch.zeros_like(tokens)
    for key, expert in experts.items():
        rows, slot = (chosen == int(key)).nonzero(as_tuple=True)
        if rows.numel():
            out.index_add_(0, rows, expert(tokens[rows]) * weights[rows, slot, None])
    return out


class MoE(nn.Module):
    """Token-choice top-k routing (Switch/Mixtral style) over `experts`, plus always-on shared experts.

    `dispatch` moves tokens to experts: all on this process here; expert parallelism swaps in an
    all-to-all over the EP group, holding only this rank's experts in `experts`."""

    def __init__(self, spec: ModelSpec, options: MoEOptions) -> None:
        super().__init__()
        moe = spec.moe
        assert moe is not None
        self.top_k, self.n_experts, self.options = moe.top_k, moe.experts, options
        self.router = nn.Linear(spec.hidden, moe.experts, bias=False)
        make = lambda: MLP(spec.hidden, moe.expert_ffn_hidden, spec.gated_mlp, spec.linear_bias)  # noqa: E731
        self.experts = nn.ModuleDict({str(i): make() for i in range(moe.experts)})
        self.shared = nn.ModuleList(make() for _ in range(moe.shared_experts))
        self.dispatch: ExpertDispatch = local_dispatch
        self.balance_loss_scale = 1.0  # 1 / micro-batches per step, as the language-model loss is scaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        probs = self.router(tokens).softmax(dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        kept = within_capacity(chosen, self.n_experts, self.options.capacity_factor)
        out = self.dispatch(tokens, chosen.masked_fill(~kept, -1), weights, self.experts)
        for expert in self.shared:
            out = out + expert(tokens)
        if self.training and self.options.balance_loss_coefficient > 0:
            balance = self.options.balance_loss_coefficient * switch_balance_loss(
                probs, chosen, self.n_experts
            )
            out = BalanceLossGradient.apply(out, balance, self.balance_loss_scale)
        return out.view_as(x)


class Block(nn.Module):
    def __init__(self, spec: ModelSpec, index: int, moe: MoEOptions) -> None:
        super().__init__()
        norm = (lambda: nn.LayerNorm(spec.hidden)) if spec.linear_bias else (lambda: nn.RMSNorm(spec.hidden))
        self.attention_norm, self.mlp_norm = norm(), norm()
        self.attention = Attention(spec)
        self.mlp: nn.Module = (
            MoE(spec, moe)
            if spec.is_moe_layer(index)
            else MLP(spec.hidden, spec.ffn_hidden, spec.gated_mlp, spec.linear_bias)
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    """Token ids (batch, seq) in, logits (batch, seq, vocab) out.

    A pipeline stage is a Decoder with some parts removed: without `embedding` it takes hidden
    states in, without `norm` it gives them out. `position_offset` is the global position of the
    first token (context parallelism gives each rank a slice of the sequence)."""

    def __init__(self, spec: ModelSpec, recompute: bool = False, moe: MoEOptions | None = None) -> None:
        super().__init__()
        if spec.mla is not None:
            raise SpecError(
                f"model {spec.slug}: multi-latent attention (mla) is not implemented in the runtime"
            )
        self.spec, self.recompute = spec, recompute
        self.embedding: nn.Embedding | None = nn.Embedding(spec.vocab, spec.hidden)
        self.positions = nn.Embedding(spec.max_seq_len, spec.hidden) if spec.learned_positions else None
        options = moe or MoEOptions()
        self.layers = nn.ModuleDict({str(i): Block(spec, i, options) for i in range(spec.n_layers)})
        self.norm: nn.Module | None = nn.RMSNorm(spec.hidden)
        self.output = None if spec.tied_embeddings else nn.Linear(spec.hidden, spec.vocab, bias=False)
        self.position_offset = 0
        cos, sin = rope_tables(spec.max_seq_len, spec.dim_per_head)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(_init_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        seq = tokens.shape[1]
        start, end = self.position_offset, self.position_offset + seq
        if end > self.spec.max_seq_len:
            raise SpecError(f"sequence of {end} tokens exceeds model max_seq_len {self.spec.max_seq_len}")
        x = tokens
        if self.embedding is not None:
            x = self.embedding(tokens)
            if self.positions is not None:
                x = x + self.positions(torch.arange(start, end, device=tokens.device))
        # from the first position on: under sequence parallelism a stage's input holds seq / tp tokens
        cos, sin = self.rope_cos[start:], self.rope_sin[start:]  # type: ignore[index]
        for layer in self.layers.values():
            if self.recompute and self.training:
                x = checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        if self.norm is None:
            return x
        x = self.norm(x)
        if self.output is None:
            assert self.embedding is not None, "tied embeddings need the embedding on the last stage"
            return F.linear(x, self.embedding.weight)
        return self.output(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
