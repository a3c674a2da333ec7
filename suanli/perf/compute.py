"""Compute time of transformer layers on one accelerator: shape-dependent GEMMs, FlashAttention,
memory-bound element-wise kernels, FP8 for linear layers only.

A GEMM runs at the accelerator's *achievable* matmul rate (datasheet peak × the measured MAMF
fraction, stas00/ml-engineering) times a shape factor per dimension, so tensor parallelism (which
shrinks n or k) and small models lose efficiency; it is never faster than moving its operands
through HBM (roofline, Williams et al. 2009).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from suanli.perf.calibration import STACK_AGNOSTIC
from suanli.perf.flops import attention_core_flops
from suanli.perf.memory import runs_fp8
from suanli.spec.accelerator import Accelerator
from suanli.spec.calibration import load_calibration
from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec

BYTES_16BIT = 2


@cache
def perf_constants() -> dict[str, Any]:
    """The model's unfitted constants, from suanli/calibration/perf_model.yaml."""
    return load_calibration("perf_model.yaml")


@dataclass(frozen=True)
class Hardware:
    """What the compute model needs of an accelerator, at one training precision."""

    slug: str
    matmul_tflops: float  # achievable 16-bit GEMM rate
    fp8_matmul_tflops: float | None  # achievable FP8 GEMM rate, None when unsupported
    attention_tflops: float  # FlashAttention fwd+bwd rate (16-bit)
    memory_bw_gb_s: float  # achievable streaming bandwidth
    memory_gb: float
    peak_tflops_16bit: float  # datasheet, the MFU denominator
    peak_tflops_fp8: float | None
    fp8: bool  # run linear layers in FP8

    @property
    def mfu_peak_tflops(self) -> float:
        """The peak sources divide by: 16-bit peak, FP8 peak for FP8 runs (NVIDIA's convention)."""
        return self.peak_tflops_fp8 if self.fp8 and self.peak_tflops_fp8 else self.peak_tflops_16bit


def attention_fraction(accelerator_slug: str, stack: str) -> float:
    """FlashAttention's share of the 16-bit peak for the kernel generation `stack` uses."""
    constants = perf_constants()
    kernel = constants["stack_attention_kernel"].get(stack, "fused")
    table = constants["attention_fraction"][kernel]
    return table.get(accelerator_slug, table["default"])


def hardware(accelerator: Accelerator, precision: str = "bf16", stack: str = STACK_AGNOSTIC) -> Hardware:
    """Achievable rates of `accelerator` for a run in `precision` (bf16, fp16, fp8, fp32) with the
    kernels of software `stack`."""
    constants = perf_constants()
    peak16 = accelerator.peak("bf16") or accelerator.peak("fp16")
    if peak16 is None:
        raise SpecError(
            f"accelerator {accelerator.slug!r}: no published bf16/fp16 peak, cannot estimate compute"
        )
    if accelerator.memory_gb is None:
        raise SpecError(f"accelerator {accelerator.slug!r}: memory_gb is unknown, cannot check memory")
    fraction = accelerator.achievable_matmul_fraction or constants["default_matmul_fraction"]
    attention = attention_fraction(accelerator.slug, stack)
    bandwidth = accelerator.memory_bw_gb_s or 1000.0 * peak16 / 300  # ~A100 ratio when unpublished
    peak8 = accelerator.peak("fp8")
    if precision == "fp32":
        peak16 = accelerator.peak("tf32") or accelerator.peak("fp32") or peak16
    return Hardware(
        slug=accelerator.slug,
        matmul_tflops=peak16 * fraction,
        fp8_matmul_tflops=peak8 * fraction * constants["fp8_matmul_fraction_ratio"] if peak8 else None,
        attention_tflops=peak16 * attention,
        memory_bw_gb_s=bandwidth * constants["memory_bw_fraction"],
        memory_gb=accelerator.memory_gb,
        peak_tflops_16bit=peak16,
        peak_tflops_fp8=peak8,
        fp8=runs_fp8(accelerator, precision),
    )


def shape_factor(dim: float) -> float:
    """Fraction of the achievable rate a GEMM dimension of size `dim` allows (calibration/perf_model.yaml)."""
    half = perf_constants()["gemm_half_dim"]
    return dim / (dim + half)


def gemm_time_s(m: float, n: float, k: float, hw: Hardware, fp8: bool = False) -> float:
    """Forward time of an (m×k)·(k×n) GEMM: shape-scaled achievable rate, bounded by HBM traffic.

    FP8 GEMMs also pay the casts TransformerEngine does (read 16-bit, write 8-bit) of their input."""
    rate = hw.fp8_matmul_tflops if fp8 and hw.fp8_matmul_tflops else hw.matmul_tflops
    rate *= shape_factor(m) * shape_factor(n) * shape_factor(k)
    element = 1 if fp8 else BYTES_16BIT
    traffic = (m * k + k * n) * element + m * n * BYTES_16BIT
    if fp8:
        traffic += 3 * m * k  # cast of the activation input
    return max(2 * m * n * k / (rate * 1e12), traffic / (hw.memory_bw_gb_s * 1e9))


@dataclass(frozen=True)
class LayerTime:
    """Time of one layer for one micro-batch on one accelerator, forward and backward (s)."""

    forward_s: float
    backward_s: float
    recompute_s: float  # extra forward work in the backward pass

    @property
    def total_s(self) -> float:
        return self.forward_s + self.backward_s + self.recompute_s


def dense_gemms(model: ModelSpec, tokens: float, tp: int) -> list[tuple[float, float, float]]:
    """(m, n, k) of the attention projections of a layer on one TP rank."""
    h = model.hidden
    if model.mla:
        m_ = model.mla
        qk = m_.qk_nope_head_dim + m_.qk_rope_head_dim
        gemms: list[tuple[float, float, float]] = [(tokens, m_.kv_lora_rank + m_.qk_rope_head_dim, h)]
        if m_.q_lora_rank:
            gemms += [(tokens, m_.q_lora_rank, h), (tokens, model.n_heads * qk / tp, m_.q_lora_rank)]
        else:
            gemms.append((tokens, model.n_heads * qk / tp, h))
        gemms.append((tokens, model.n_heads * (m_.qk_nope_head_dim + m_.v_head_dim) / tp, m_.kv_lora_rank))
        gemms.append((tokens, h, model.n_heads * m_.v_head_dim / tp))
        return gemms
    q = model.n_heads * model.dim_per_head
    kv = model.kv_heads * model.dim_per_head
    return [(tokens, (q + 2 * kv) / tp, h), (tokens, h, q / tp)]


def mlp_gemms(model: ModelSpec, tokens: float, ffn: float) -> list[tuple[float, float, float]]:
    """(m, n, k) of one MLP with `ffn` hidden units (already divided by TP)."""
    up = 2 * ffn if model.gated_mlp else ffn
    return [(tokens, up, model.hidden), (tokens, model.hidden, ffn)]


def elementwise_bytes(model: ModelSpec, tokens: float, tp: int, sequence_parallel: bool, ffn: float) -> float:
    """HBM traffic of a layer's forward memory-bound kernels: 2 norms and 2 residual adds on the
    hidden state (sequence-parallel ranks each do 1/t), RoPE on Q and K, the MLP activation."""
    h = model.hidden
    hidden_side = (2 * 2 * h + 2 * 3 * h) / (tp if sequence_parallel else 1)
    q_k = (model.n_heads + model.kv_heads) * model.dim_per_head / tp
    activation = (3 if model.gated_mlp else 2) * ffn
    return tokens * BYTES_16BIT * (hidden_side + 2 * q_k + activation)


def eager_elementwise_bytes(
    model: ModelSpec, tokens: float, tp: int, sequence_parallel: bool, ffn: float
) -> float:
    """The same forward kernels run unfused, op by op, as PyTorch eager mode does them (torchtitan's
    RMSNorm, complex RoPE and SwiGLU modules, counted per element read + written): an RMSNorm upcasts
    to fp32, squares, averages, scales, casts back and multiplies by its weight (36 bytes per hidden
    element against 4 fused); RoPE upcasts Q and K, multiplies by the complex frequencies and casts
    back (20 against 4); SwiGLU writes silu(gate) before multiplying (10 per FFN unit against 6);
    the residual adds are the same (6)."""
    h = model.hidden
    hidden_side = (2 * 36 * h + 2 * 6 * h) / (tp if sequence_parallel else 1)
    q_k = (model.n_heads + model.kv_heads) * model.dim_per_head / tp
    return tokens * (hidden_side + 20 * q_k + 10 * ffn)


def attention_time_s(
    model: ModelSpec, tokens: float, seq_len: int, tp: int, hw: Hardware
) -> tuple[float, float]:
    """Forward and backward time of the causal FlashAttention core for `tokens` queries of one rank
    (a causal kernel skips the masked half of the blocks)."""
    backward_ratio = perf_constants()["attention_backward_ratio"]
    flops = attention_core_flops(model, seq_len, causal=True) * tokens / tp
    forward = flops / (hw.attention_tflops * 1e12)
    return forward, forward * backward_ratio


def kernel_overhead_s() -> float:
    constants = perf_constants()
    return constants["kernels_per_layer_forward"] * constants["kernel_overhead_us"] * 1e-6


def layer_time(
    model: ModelSpec,
    index: int,
    tokens: float,
    seq_len: int,
    tp: int,
    sequence_parallel: bool,
    recompute: str,
    hw: Hardware,
    expert_time_s: float = 0.0,
    eager: bool = False,
) -> LayerTime:
    """One layer, one micro-batch of `tokens` tokens per rank (b·s/cp), on one TP rank.

    `expert_time_s` is the forward time of the routed experts (from `suanli.perf.moe`) for MoE
    layers; everything else is computed here. Backward GEMMs (input and weight gradients) cost
    twice the forward."""
    gemms = dense_gemms(model, tokens, tp)
    moe = model.moe if model.is_moe_layer(index) else None  # the layer's MoE block, if it has one
    if moe is not None:
        if moe.shared_experts:
            gemms += mlp_gemms(model, tokens, moe.shared_experts * moe.expert_ffn_hidden / tp)
        gemms.append((tokens / tp if sequence_parallel else tokens, moe.experts, model.hidden))
        ffn = (moe.top_k + moe.shared_experts) * moe.expert_ffn_hidden / tp
    else:
        gemms += mlp_gemms(model, tokens, model.ffn_hidden / tp)
        ffn = model.ffn_hidden / tp
    linear = sum(gemm_time_s(m, n, k, hw, fp8=hw.fp8) for m, n, k in gemms) + expert_time_s
    attn_fwd, attn_bwd = attention_time_s(model, tokens, seq_len, tp, hw)
    kernels = eager_elementwise_bytes if eager else elementwise_bytes
    traffic = kernels(model, tokens, tp, sequence_parallel, ffn)
    overhead = kernel_overhead_s()
    if moe is not None:
        routed = tokens / tp if sequence_parallel else tokens
        traffic += routed * moe.top_k * model.hidden * BYTES_16BIT * 4  # permute + unpermute
    memory = traffic / (hw.memory_bw_gb_s * 1e9)
    forward = linear + attn_fwd + memory + overhead
    backward = 2 * linear + attn_bwd + 2 * memory + 2 * overhead
    if moe is not None:  # the host cannot run ahead of a dropless MoE layer: it waits for its launches
        host_s = perf_constants()["moe_layer_host_ms"] * 1e-3
        forward, backward = max(forward, host_s), max(backward, 2 * host_s)
    recompute_s = {"none": 0.0, "selective": attn_fwd, "full": forward}[recompute]
    return LayerTime(forward, backward, recompute_s)


def lm_head_time_s(model: ModelSpec, tokens: float, tp: int, hw: Hardware) -> float:
    """Forward + backward of the output projection and the cross-entropy over the vocabulary
    (kept in 16-bit: FP8 recipes leave the head in bf16)."""
    gemm = gemm_time_s(tokens, model.vocab / tp, model.hidden, hw)
    softmax = tokens * model.vocab / tp * (2 + 4 + 4) / (hw.memory_bw_gb_s * 1e9)
    return 3 * gemm + softmax
