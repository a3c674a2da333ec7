"""The frameworks' own argument rules, checked on an exported configuration.

Megatron-LM: `validate_args` in megatron/training/arguments.py (pipeline divisibility, interleaving,
FSDP2 and distributed-optimizer combinations, context-parallel sequence length, batch arithmetic)
and the uneven-pipeline checks of megatron/core/transformer/transformer_config.py (middle stages
equal; with virtual stages every stage's layers divide by them). torchtitan: ParallelDims
(torchtitan/distributed/parallel_dims.py: the degrees multiply to the world size, EP inside
dp_shard·cp·tp), the training batch arithmetic and context parallelism's load-balanced sequence
split (2·cp chunks). Each rule returns one line naming the flag or key and why.
"""

from __future__ import annotations

import re
import shlex
import tomllib

MEGATRON_MODELS_WITH_MLA = ("--q-lora-rank", "--kv-lora-rank", "--qk-head-dim", "--qk-pos-emb-head-dim")
TORCHTITAN_MODELS = ("llama3", "llama4", "deepseek_v3", "qwen3")


def megatron_pipeline_split(n_layers: int, pp: int, vpp: int) -> tuple[int, int, int] | None:
    """(first, last, middle) layers per stage that Megatron-Core can express when pp does not
    divide the layers: equal middle stages, the remainder on the first and last stage
    (`--decoder-first/last-pipeline-num-layers`), each a multiple of vpp and none above the
    middle stages' ceil(layers/pp), so the slowest stage is the even split's; the last gets the
    smaller share (it also holds the LM head). None when no such split exists."""
    middle = -(-n_layers // pp)
    rest = n_layers - (pp - 2) * middle
    last = rest // 2 // vpp * vpp
    first = rest - last
    if middle % vpp == 0 and vpp <= last <= first <= middle and first % vpp == 0:
        return first, last, middle
    return None


def embedding_loss_split(n_layers: int, pp: int, vpp: int) -> tuple[int, int, int] | None:
    """(first, last, middle) layers per stage with Megatron-Core's `--account-for-embedding-in-
    pipeline-split` and `--account-for-loss-in-pipeline-split`: the embedding and the loss each count
    as one layer (TransformerConfig adds one to num_layers for each), so the first and last stages
    hold one layer fewer — Llama 3's split (Dubey et al. 2024, sec. 3.3.2: the first model chunk
    holds only the embedding). None unless layers + 2 divide over the pp stages and each stage's
    share over its vpp chunks."""
    total = n_layers + 2
    if pp < 2 or total % pp or (total // pp) % vpp:
        return None
    per_stage = total // pp
    return per_stage - 1, per_stage - 1, per_stage


def megatron_flags(args: list[str]) -> dict[str, str]:
    """`--flag value` / `--switch` strings as {flag: value or ""}."""
    flags: dict[str, str] = {}
    for arg in args:
        parts = shlex.split(arg)
        flags[parts[0]] = " ".join(parts[1:])
    return flags


def megatron_violations(args: list[str], world_size: int) -> list[str]:
    """The rules of Megatron-LM's argument validation the flags break (empty: it would start)."""
    f = megatron_flags(args)
    num = {k: int(v) for k, v in f.items() if v.lstrip("-").isdigit()}
    tp, pp = num.get("--tensor-model-parallel-size", 1), num.get("--pipeline-model-parallel-size", 1)
    cp, ep = num.get("--context-parallel-size", 1), num.get("--expert-model-parallel-size", 1)
    layers, micro, gbs = num["--num-layers"], num["--micro-batch-size"], num["--global-batch-size"]
    out = []
    if world_size % (tp * pp * cp):
        out.append(f"world size {world_size} is not divisible by tp·pp·cp = {tp * pp * cp}")
        return out
    dp = world_size // (tp * pp * cp)
    if ep > 1 and (dp * cp * tp) % ep:
        out.append(f"--expert-model-parallel-size {ep} does not divide the tp·dp·cp ranks {tp * dp * cp}")
    if gbs % (micro * dp):
        out.append(f"--global-batch-size {gbs} is not divisible by micro-batch·dp = {micro * dp}")
    first = num.get("--decoder-first-pipeline-num-layers")
    last = num.get("--decoder-last-pipeline-num-layers")
    per_vstage = num.get("--num-layers-per-virtual-pipeline-stage")
    vstages = num.get("--num-virtual-stages-per-pipeline-rank")
    if per_vstage and vstages:
        out.append(
            "--num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank together"
        )
    interleaved = per_vstage or vstages
    accounted = sum(
        flag in f
        for flag in ("--account-for-embedding-in-pipeline-split", "--account-for-loss-in-pipeline-split")
    )
    if interleaved and pp <= (1 if "--overlap-p2p-comm" in f else 2):
        out.append(
            f"the interleaved schedule needs pipeline size > 2 (or > 1 with --overlap-p2p-comm), got {pp}"
        )
    if accounted and (first is not None or last is not None):
        out.append(
            "--account-for-embedding/loss-in-pipeline-split with --decoder-first/last-pipeline-num-layers"
        )
    elif accounted:
        if (layers + accounted) % pp:
            out.append(
                f"--num-layers {layers} + {accounted} (embedding/loss counted as layers) is not divisible "
                f"by --pipeline-model-parallel-size {pp}"
            )
        elif per_vstage:
            out.append("--account-for-*-in-pipeline-split needs --num-virtual-stages-per-pipeline-rank")
        elif vstages and ((layers + accounted) // pp) % vstages:
            out.append(
                f"{(layers + accounted) // pp} layers per stage (embedding/loss counted) not divisible by "
                f"{vstages} virtual stages"
            )
    elif first is None and last is None:
        if layers % pp:
            out.append(f"--num-layers {layers} is not divisible by --pipeline-model-parallel-size {pp}")
        elif per_vstage and (layers // pp) % per_vstage:
            out.append(
                f"layers per stage {layers // pp} not divisible by --num-layers-per-virtual-pipeline-stage"
            )
    else:
        if per_vstage:
            out.append("uneven pipeline stages need --num-virtual-stages-per-pipeline-rank for interleaving")
        middle_stages = pp - (first is not None) - (last is not None)
        middle_layers = layers - (first or 0) - (last or 0)
        if min(x for x in (first, last, middle_layers) if x is not None) <= 0 or middle_stages <= 0:
            out.append("uneven pipeline: every stage needs at least one layer")
        elif middle_layers % middle_stages:
            out.append(
                f"{middle_layers} middle layers are not divisible by the {middle_stages} middle stages"
            )
        elif vstages:
            for name, count in (("first", first), ("last", last), ("middle", middle_layers // middle_stages)):
                if count is not None and count % vstages:
                    out.append(f"{name} stage's {count} layers not divisible by {vstages} virtual stages")
    if "--use-torch-fsdp2" in f:
        if pp != 1 or ep != 1:
            out.append("--use-torch-fsdp2 is not supported with pipeline or expert parallelism")
        if "--use-distributed-optimizer" in f:
            out.append("--use-torch-fsdp2 is not supported with the distributed optimizer")
        if "--no-gradient-accumulation-fusion" not in f:
            out.append("--use-torch-fsdp2 is not supported with gradient accumulation fusion")
        if "--untie-embeddings-and-output-weights" not in f:
            out.append("--use-torch-fsdp2 requires --untie-embeddings-and-output-weights")
    if "--overlap-param-gather" in f and (
        "--use-distributed-optimizer" not in f or "--overlap-grad-reduce" not in f
    ):
        out.append("--overlap-param-gather needs --use-distributed-optimizer and --overlap-grad-reduce")
    if "--use-custom-fsdp" in f and "--use-distributed-optimizer" not in f:
        out.append("--use-custom-fsdp needs --use-distributed-optimizer")
    seq = num["--seq-length"]
    if cp > 1 and seq % (2 * cp):
        out.append(f"--seq-length {seq} is not a multiple of 2·context-parallel-size = {2 * cp}")
    plain_heads = "--multi-latent-attention" not in f and "--kv-channels" not in f
    if plain_heads and num["--hidden-size"] % num["--num-attention-heads"]:
        out.append("--hidden-size is not divisible by --num-attention-heads (and no --kv-channels)")
    if "--multi-latent-attention" in f:
        out += [f"--multi-latent-attention without {k}" for k in MEGATRON_MODELS_WITH_MLA if k not in f]
    if "--num-query-groups" in f and num["--num-attention-heads"] % num["--num-query-groups"]:
        out.append("--num-attention-heads is not divisible by --num-query-groups")
    if "--num-query-groups" in f and num["--num-query-groups"] % tp and tp % num["--num-query-groups"]:
        out.append("--num-query-groups and --tensor-model-parallel-size do not divide each other")
    if "--moe-layer-freq" in f:
        listed = sum(int(n) for n in re.findall(r"\[[01]\]\*(\d+)", f["--moe-layer-freq"]))
        if listed != layers:
            out.append(f"--moe-layer-freq lists {listed} layers, the model has {layers}")
    return out


def torchtitan_violations(toml: str, world_size: int, n_layers: int) -> list[str]:
    """The rules of torchtitan's ParallelDims and training config the TOML breaks."""
    config = tomllib.loads(toml)
    par, train = config["parallelism"], config["training"]
    replicate, shard = par["data_parallel_replicate_degree"], par["data_parallel_shard_degree"]
    tp, pp = par["tensor_parallel_degree"], par["pipeline_parallel_degree"]
    cp, ep = par["context_parallel_degree"], par["expert_parallel_degree"]
    out = []
    if config["model"]["name"] not in TORCHTITAN_MODELS:
        out.append(f"[model] name {config['model']['name']!r} is not a torchtitan model")
    if replicate * shard * cp * tp * pp != world_size:
        out.append(
            f"dp_replicate·dp_shard·cp·tp·pp = {replicate * shard * cp * tp * pp} != world size {world_size}"
        )
    if ep > 1 and (shard * cp * tp) % ep:
        out.append(f"expert_parallel_degree {ep} does not divide dp_shard·cp·tp = {shard * cp * tp}")
    local, micro = train["local_batch_size"], par["pipeline_parallel_microbatch_size"]
    if local * replicate * shard != train["global_batch_size"]:
        out.append("local_batch_size · dp_replicate · dp_shard != global_batch_size")
    if pp > 1 and local % micro:
        out.append(f"local_batch_size {local} is not divisible by pipeline_parallel_microbatch_size {micro}")
    if pp > n_layers:
        out.append(f"pipeline_parallel_degree {pp} exceeds the {n_layers} layers")
    if cp > 1 and train["seq_len"] % (2 * cp):
        out.append(f"seq_len {train['seq_len']} is not divisible by 2·context_parallel_degree")
    return out
