"""A Llama-style decoder built from a `ModelSpec`: GQA, RoPE, SwiGLU or plain MLP, RMSNorm, optional MoE.

Parameter for parameter it matches `ModelSpec.param_count()`, so the planner's FLOP and memory
models describe exactly the network that runs here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

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


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = spec.n_heads, spec.kv_heads, spec.dim_per_head
        qkv_bias = spec.linear_bias or spec.qkv_bias
        self.wq = nn.Linear(spec.hidden, self.n_heads * self.head_dim, bias=qkv_bias)
        self.wk = nn.Linear(spec.hidden, self.kv_heads * self.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(spec.hidden, self.kv_heads * self.head_dim, bias=qkv_bias)
        self.wo = nn.Linear(self.n_heads * self.head_dim, spec.hidden, bias=spec.linear_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.kv_heads != self.n_heads
        )
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


class MoE(nn.Module):
    """Token-choice top-k routing (Switch/Mixtral style) over `experts`, plus always-on shared experts."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        moe = spec.moe
        assert moe is not None
        self.top_k = moe.top_k
        self.router = nn.Linear(spec.hidden, moe.experts, bias=False)
        make = lambda: MLP(spec.hidden, moe.expert_ffn_hidden, spec.gated_mlp, spec.linear_bias)  # noqa: E731
        self.experts = nn.ModuleList(make() for _ in range(moe.experts))
        self.shared = nn.ModuleList(make() for _ in range(moe.shared_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        weights, chosen = self.router(tokens).softmax(dim=-1).topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(tokens)
        for index, expert in enumerate(self.experts):
            rows, slot = (chosen == index).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(tokens[rows]) * weights[rows, slot, None])
        for expert in self.shared:
            out = out + expert(tokens)
        return out.view_as(x)


class Block(nn.Module):
    def __init__(self, spec: ModelSpec, index: int) -> None:
        super().__init__()
        norm = (lambda: nn.LayerNorm(spec.hidden)) if spec.linear_bias else (lambda: nn.RMSNorm(spec.hidden))
        self.attention_norm, self.mlp_norm = norm(), norm()
        self.attention = Attention(spec)
        self.mlp: nn.Module = (
            MoE(spec)
            if spec.is_moe_layer(index)
            else MLP(spec.hidden, spec.ffn_hidden, spec.gated_mlp, spec.linear_bias)
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    """Token ids (batch, seq) in, logits (batch, seq, vocab) out."""

    def __init__(self, spec: ModelSpec, recompute: bool = False) -> None:
        super().__init__()
        if spec.mla is not None:
            raise SpecError(
                f"model {spec.slug}: multi-latent attention (mla) is not implemented in the runtime"
            )
        self.spec, self.recompute = spec, recompute
        self.embedding = nn.Embedding(spec.vocab, spec.hidden)
        self.positions = nn.Embedding(spec.max_seq_len, spec.hidden) if spec.learned_positions else None
        self.layers = nn.ModuleList(Block(spec, i) for i in range(spec.n_layers))
        self.norm = nn.RMSNorm(spec.hidden)
        self.output = None if spec.tied_embeddings else nn.Linear(spec.hidden, spec.vocab, bias=False)
        cos, sin = rope_tables(spec.max_seq_len, spec.dim_per_head)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(_init_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        seq = tokens.shape[1]
        if seq > self.spec.max_seq_len:
            raise SpecError(f"sequence of {seq} tokens exceeds model max_seq_len {self.spec.max_seq_len}")
        x = self.embedding(tokens)
        if self.positions is not None:
            x = x + self.positions(torch.arange(seq, device=tokens.device))
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        for layer in self.layers:
            if self.recompute and self.training:
                x = checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        x = self.norm(x)
        weight = self.embedding.weight if self.output is None else self.output.weight
        return F.linear(x, weight)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
