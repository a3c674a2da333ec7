"""Launch arguments for a plan: Megatron-LM command-line flags or a torchtitan TOML.

Flag names are Megatron-LM's (megatron/training/arguments.py) and torchtitan's JobConfig sections
([parallelism], [training], [activation_checkpoint], [model]).
"""

from __future__ import annotations

from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Plan

EMITTERS = ("megatron", "torchtitan")


def megatron_args(plan: Plan, model: ModelSpec, seq_len: int, global_batch: int, precision: str) -> list[str]:
    """pretrain_gpt.py flags for the plan's layout and the model's shape."""
    layout = plan.layout
    args = [
        f"--tensor-model-parallel-size {layout.tp}",
        f"--pipeline-model-parallel-size {layout.pp}",
        f"--context-parallel-size {layout.cp}",
        f"--micro-batch-size {layout.micro_batch}",
        f"--global-batch-size {global_batch}",
        f"--seq-length {seq_len}",
        f"--max-position-embeddings {model.max_seq_len}",
        f"--num-layers {model.n_layers}",
        f"--hidden-size {model.hidden}",
        f"--num-attention-heads {model.n_heads}",
        f"--ffn-hidden-size {model.ffn_hidden}",
        f"--vocab-size {model.vocab}",
    ]
    if model.kv_heads != model.n_heads:
        args += ["--group-query-attention", f"--num-query-groups {model.kv_heads}"]
    if model.gated_mlp:
        args.append("--swiglu")
    if model.moe:
        args += [
            f"--num-experts {model.moe.experts}",
            f"--moe-router-topk {model.moe.top_k}",
            f"--moe-ffn-hidden-size {model.moe.expert_ffn_hidden}",
            f"--expert-model-parallel-size {layout.ep}",
            "--moe-grouped-gemm",
            "--moe-token-dispatcher-type alltoall",
        ]
    if layout.vpp > 1:
        args.append(f"--num-layers-per-virtual-pipeline-stage {model.n_layers // (layout.pp * layout.vpp)}")
    if layout.sequence_parallel and layout.tp > 1:
        args += ["--sequence-parallel", "--tp-comm-overlap"]
    if layout.zero_stage == 3:
        args += ["--use-torch-fsdp2", "--no-gradient-accumulation-fusion"]
    elif layout.zero_stage >= 1:
        args += ["--use-distributed-optimizer", "--overlap-param-gather"]
    args.append("--overlap-grad-reduce")
    if layout.recompute == "full":
        args += ["--recompute-granularity full", "--recompute-method uniform", "--recompute-num-layers 1"]
    elif layout.recompute == "selective":
        args.append("--recompute-granularity selective")
    args.append("--fp16" if precision == "fp16" else "--bf16")
    if precision == "fp8":
        args += ["--fp8-format hybrid", "--fp8-amax-history-len 1024", "--fp8-amax-compute-algo max"]
    args += ["--use-flash-attn", "--use-mcore-models"]
    return args


def torchtitan_toml(plan: Plan, model: ModelSpec, seq_len: int, global_batch: int, precision: str) -> str:
    """A torchtitan job config (TOML) for the plan. torchtitan shards with FSDP: ZeRO-3 maps to
    data_parallel_shard_degree, lower stages to replicated data parallelism."""
    layout = plan.layout
    shard = layout.dp if layout.zero_stage == 3 else 1
    replicate = 1 if layout.zero_stage == 3 else layout.dp
    lines = [
        f"# Suanli plan: {plan.accelerator} × {plan.gpus}, {layout.short()}",
        "[model]",
        f'name = "{model.slug}"',
        "",
        "[training]",
        f"local_batch_size = {global_batch // layout.dp}",
        f"global_batch_size = {global_batch}",
        f"seq_len = {seq_len}",
        'mixed_precision_param = "bfloat16"',
        "",
        "[parallelism]",
        f"data_parallel_replicate_degree = {replicate}",
        f"data_parallel_shard_degree = {shard}",
        f"tensor_parallel_degree = {layout.tp}",
        f"pipeline_parallel_degree = {layout.pp}",
        f"context_parallel_degree = {layout.cp}",
        f"expert_parallel_degree = {layout.ep}",
        f'pipeline_parallel_schedule = "{layout.schedule}"',
        f"pipeline_parallel_microbatch_size = {layout.micro_batch}",
        "",
        "[activation_checkpoint]",
        f'mode = "{layout.recompute}"',
    ]
    if precision == "fp8":
        lines += ["", "[float8]", "enable_fsdp_float8_all_gather = true"]
    return "\n".join(lines) + "\n"


def emit(plan: Plan, target: str, model: ModelSpec, seq_len: int, global_batch: int, precision: str) -> str:
    """The launch configuration of `plan` for `target` (megatron or torchtitan)."""
    if plan.stages:
        raise SpecError(
            f"--emit {target}: heterogeneous plans ({plan.accelerator}) need a launcher per pool; "
            "emit a single-pool plan"
        )
    if target == "megatron":
        return " \\\n  ".join(megatron_args(plan, model, seq_len, global_batch, precision)) + "\n"
    if target == "torchtitan":
        return torchtitan_toml(plan, model, seq_len, global_batch, precision)
    raise SpecError(f"--emit: expected one of {', '.join(EMITTERS)}, got {target!r}")
