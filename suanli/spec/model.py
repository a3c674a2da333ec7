"""`ModelSpec`: a decoder-only transformer, dense or mixture-of-experts."""

from __future__ import annotations

from pydantic import Field, model_validator

from suanli.spec.base import Spec


class MultiLatentAttention(Spec):
    """DeepSeek-V2/V3 attention: low-rank compressed queries and keys/values (MLA)."""

    q_lora_rank: int | None = Field(default=None, gt=0)
    kv_lora_rank: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)


class MoE(Spec):
    experts: int = Field(gt=1)
    top_k: int = Field(gt=0)
    expert_ffn_hidden: int = Field(gt=0)
    shared_experts: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(default=0, ge=0, description="leading layers with a dense MLP")
    every: int = Field(default=1, gt=0, description="every n-th layer (after the dense ones) is MoE")

    @model_validator(mode="after")
    def _top_k_fits(self) -> MoE:
        if self.top_k > self.experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= experts ({self.experts})")
        return self


class ModelSpec(Spec):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    n_layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    n_kv_heads: int | None = Field(default=None, gt=0, description="GQA groups; default = n_heads (MHA)")
    head_dim: int | None = Field(default=None, gt=0, description="default hidden / n_heads")
    ffn_hidden: int = Field(gt=0, description="dense MLP hidden size")
    gated_mlp: bool = Field(default=True, description="SwiGLU-style (3 matrices) or plain (2)")
    vocab: int = Field(gt=0)
    max_seq_len: int = Field(gt=0)
    tied_embeddings: bool = False
    learned_positions: bool = Field(default=False, description="GPT-style learned position table")
    linear_bias: bool = Field(default=False, description="biases on every linear layer (GPT-3)")
    qkv_bias: bool = Field(default=False, description="biases on the QKV projection only (Qwen2)")
    mla: MultiLatentAttention | None = None
    moe: MoE | None = None
    mtp_modules: int = Field(default=0, ge=0, description="multi-token-prediction modules (DeepSeek-V3)")
    stated_params_b: float | None = Field(default=None, gt=0, description="published size, billions")
    source: str = "user-defined"

    @model_validator(mode="after")
    def _shape(self) -> ModelSpec:
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.kv_heads})")
        if self.head_dim is None and self.hidden % self.n_heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of n_heads ({self.n_heads})")
        if self.moe and self.moe.first_dense_layers > self.n_layers:
            raise ValueError("moe.first_dense_layers must be <= n_layers")
        return self

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.n_heads

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def is_moe_layer(self, index: int) -> bool:
        if self.moe is None or index < self.moe.first_dense_layers:
            return False
        return (index - self.moe.first_dense_layers) % self.moe.every == 0

    # -- parameter counts -------------------------------------------------------------------

    def attention_params(self) -> int:
        h = self.hidden
        if self.mla:
            m = self.mla
            qk_dim = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * self.n_heads * qk_dim
            else:
                q = h * self.n_heads * qk_dim
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
            kv += m.kv_lora_rank * self.n_heads * (m.qk_nope_head_dim + m.v_head_dim)
            return q + kv + self.n_heads * m.v_head_dim * h
        q_dim = self.n_heads * self.dim_per_head
        kv_dim = self.kv_heads * self.dim_per_head
        weights = h * q_dim + 2 * h * kv_dim + q_dim * h
        if self.linear_bias:
            weights += q_dim + 2 * kv_dim + h
        elif self.qkv_bias:
            weights += q_dim + 2 * kv_dim
        return weights

    def mlp_params(self, ffn_hidden: int) -> int:
        matrices = 3 if self.gated_mlp else 2
        bias = (ffn_hidden * (2 if self.gated_mlp else 1) + self.hidden) if self.linear_bias else 0
        return matrices * self.hidden * ffn_hidden + bias

    def layer_params(self, index: int, active_only: bool = False) -> int:
        norms = 2 * self.hidden * (2 if self.linear_bias else 1)
        if not self.is_moe_layer(index):
            return self.attention_params() + self.mlp_params(self.ffn_hidden) + norms
        moe = self.moe
        assert moe is not None
        routed = moe.top_k if active_only else moe.experts
        experts = (routed + moe.shared_experts) * self.mlp_params(moe.expert_ffn_hidden)
        return self.attention_params() + experts + self.hidden * moe.experts + norms

    def embedding_params(self) -> int:
        tables = 1 if self.tied_embeddings else 2
        positions = self.max_seq_len * self.hidden if self.learned_positions else 0
        return tables * self.vocab * self.hidden + positions + self.hidden  # + final norm

    def param_count(self, active_only: bool = False) -> int:
        """Total parameters (or those active per token, for MoE), excluding MTP modules."""
        layers = sum(self.layer_params(i, active_only) for i in range(self.n_layers))
        return layers + self.embedding_params()

    @property
    def params_b(self) -> float:
        return self.param_count() / 1e9

    @property
    def active_params_b(self) -> float:
        return self.param_count(active_only=True) / 1e9
