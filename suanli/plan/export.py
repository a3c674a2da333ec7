"""Launch arguments for a plan: Megatron-LM command-line flags or a torchtitan TOML.

Flag names are Megatron-LM's (megatron/training/arguments.py) and torchtitan's JobConfig sections
([parallelism], [training], [activation_checkpoint], [model]). Every emitted configuration passes
the frameworks' own argument rules (`suanli.plan.validate`) or `emit` refuses it with the rule.
"""

from __future__ import annotations

import math
from itertools import groupby

from suanli.plan.validate import (
    embedding_loss_split,
    megatron_pipeline_split,
    megatron_violations,
    torchtitan_violations,
)
from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Plan

EMITTERS = ("megatron", "torchtitan")
# Catalog model -> torchtitan (model name, flavor) as registered in torchtitan/models/*.
TORCHTITAN_FLAVORS = {
    "llama3.1-8b": ("llama3", "8B"),
    "llama3.1-70b": ("llama3", "70B"),
    "llama3.1-405b": ("llama3", "405B"),
    "deepseek-v3": ("deepseek_v3", "671B"),
}


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
    if model.mla:
        mla = model.mla
        args += [
            "--multi-latent-attention",
            f"--q-lora-rank {mla.q_lora_rank}",
            f"--kv-lora-rank {mla.kv_lora_rank}",
            f"--qk-head-dim {mla.qk_nope_head_dim}",
            f"--qk-pos-emb-head-dim {mla.qk_rope_head_dim}",
            f"--v-head-dim {mla.v_head_dim}",
        ]
    elif model.kv_heads != model.n_heads:
        args += ["--group-query-attention", f"--num-query-groups {model.kv_heads}"]
    if not model.tied_embeddings:
        args.append("--untie-embeddings-and-output-weights")
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
        if model.moe.shared_experts:
            shared = model.moe.shared_experts * model.moe.expert_ffn_hidden
            args.append(f"--moe-shared-expert-intermediate-size {shared}")
        if model.moe.first_dense_layers or model.moe.every > 1:
            runs = [
                (moe, len(list(group)))
                for moe, group in groupby(model.is_moe_layer(i) for i in range(model.n_layers))
            ]
            pattern = "+".join(f"[{int(moe)}]*{count}" for moe, count in runs)
            args.append(f"--moe-layer-freq '({pattern})'")  # Megatron's list form, e.g. ([0]*3+[1]*58)
    if model.mtp_modules:
        args.append(f"--mtp-num-layers {model.mtp_modules}")
    if layout.pp > 1 and model.n_layers % layout.pp:
        split = megatron_pipeline_split(model.n_layers, layout.pp, layout.vpp)
        if split is not None:
            args += [
                f"--decoder-first-pipeline-num-layers {split[0]}",
                f"--decoder-last-pipeline-num-layers {split[1]}",
            ]
        elif embedding_loss_split(model.n_layers, layout.pp, layout.vpp) is not None:
            args += ["--account-for-embedding-in-pipeline-split", "--account-for-loss-in-pipeline-split"]
        else:
            raise SpecError(
                f"--emit megatron: {model.n_layers} layers on pp {layout.pp} (vpp {layout.vpp}) have no "
                "split Megatron-Core can express (equal middle stages, first/last stage differ)"
            )
        if layout.vpp > 1:
            args.append(f"--num-virtual-stages-per-pipeline-rank {layout.vpp}")
    elif layout.vpp > 1:
        args.append(f"--num-layers-per-virtual-pipeline-stage {model.n_layers // (layout.pp * layout.vpp)}")
    if layout.vpp > 1:
        args.append("--overlap-p2p-comm")
    if layout.sequence_parallel and layout.tp > 1:
        args += ["--sequence-parallel", "--tp-comm-overlap"]
    if layout.zero_stage == 3 and layout.pp == 1 and layout.ep == 1:
        args += ["--use-torch-fsdp2", "--no-gradient-accumulation-fusion", "--ckpt-format torch_dist"]
    elif layout.zero_stage >= 2:  # Megatron's own FSDP: shards grads (2) and params (3) too
        strategy = "optim_grads_params" if layout.zero_stage == 3 else "optim_grads"
        args += [
            "--use-distributed-optimizer",
            "--use-custom-fsdp",
            f"--data-parallel-sharding-strategy {strategy}",
            "--no-gradient-accumulation-fusion",
        ]
    elif layout.zero_stage == 1:
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
    data_parallel_shard_degree (resharding after every forward, also under PP where torchtitan's
    default keeps parameters gathered), ZeRO-2 to the same without resharding after the forward,
    lower stages to replicated data parallelism."""
    layout = plan.layout
    sharded = layout.zero_stage >= 2
    shard = layout.dp if sharded else 1
    # torchtitan carves expert parallelism out of dp_shard·cp·tp: an EP plan shards at least that far.
    shard = max(shard, layout.ep // math.gcd(layout.ep, layout.cp * layout.tp))
    replicate = layout.dp // shard
    name, flavor = TORCHTITAN_FLAVORS.get(model.slug, (model.slug, ""))
    lines = [
        f"# Suanli plan: {plan.accelerator} × {plan.gpus}, {layout.short()}",
        "[model]",
        f'name = "{name}"',
        f'flavor = "{flavor}"',
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
        # ZeRO-3 as costed reshards after every forward; torchtitan's "default" would not under PP
        f'fsdp_reshard_after_forward = "{"always" if layout.zero_stage == 3 else "never"}"',
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


def refuse(target: str, violations: list[str]) -> None:
    if violations:
        raise SpecError(
            f"--emit {target}: the plan breaks {target}'s argument rules: {'; '.join(violations)}"
        )


def emit(plan: Plan, target: str, model: ModelSpec, seq_len: int, global_batch: int, precision: str) -> str:
    """The launch configuration of `plan` for `target` (megatron or torchtitan)."""
    if plan.stages:
        raise SpecError(
            f"--emit {target}: heterogeneous plans ({plan.accelerator}) need a launcher per pool; "
            "emit a single-pool plan"
        )
    if target == "megatron":
        args = megatron_args(plan, model, seq_len, global_batch, precision)
        refuse(target, megatron_violations(args, plan.gpus))
        return " \\\n  ".join(args) + "\n"
    if target == "torchtitan":
        toml = torchtitan_toml(plan, model, seq_len, global_batch, precision)
        refuse(target, torchtitan_violations(toml, plan.gpus, model.n_layers))
        return toml
    raise SpecError(f"--emit: expected one of {', '.join(EMITTERS)}, got {target!r}")
