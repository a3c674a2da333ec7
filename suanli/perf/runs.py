"""Published training runs (rows with the columns of datasets/training_runs/training_runs.csv): turn a row
into a model, layout and reference cluster, and predict the metric the row measured, on the
row's own basis (model or hardware FLOPs, 16-bit or FP8 peak, step time with the optimizer).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Literal

from suanli.perf.calibration import STACK_AGNOSTIC
from suanli.perf.flops import hardware_flops_per_token, model_flops_per_token
from suanli.perf.memory import RESERVE_FRACTION
from suanli.perf.moe import BALANCED, LEARNED_ROUTING
from suanli.perf.step import Workload, estimate_step
from suanli.spec.accelerator import Accelerator
from suanli.spec.catalog import CATALOG
from suanli.spec.cluster import Cluster, Pool
from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec, MoE
from suanli.spec.node import IntraNodeTopology, NicGroup, NodeType
from suanli.spec.plan import Layout, Recompute, StepEstimate

REQUIRED = (
    "n_layers",
    "hidden",
    "ffn_hidden",
    "vocab",
    "seq_len",
    "gpu",
    "n_gpus",
    "global_batch",
)
METRICS = ("mfu", "tflops_per_gpu", "tokens_per_s_per_gpu", "step_time_s")
DEFAULT_HEAD_DIM = 128
STACK_KEYWORDS = (
    ("composer", ("llm-foundry", "mosaicml")),
    ("torchtitan", ("torchtitan",)),
    ("jax", ("maxtext", "paxml", "jax")),
    ("mindspeed", ("modellink", "mindspeed", "ascend")),
    ("megatron", ("megatron", "nemo", "dgxc", "bloom", "mt-nlg", "narayanan")),
)
ZeroStage = Literal[0, 1, 2, 3]
ZERO_BY_STACK: dict[str, ZeroStage] = {"composer": 3, "jax": 3, "torchtitan": 3}  # FSDP; others: ZeRO-1
# How a row's notes name its sharding, most specific first: FSDP that keeps parameters after the
# forward (SHARD_GRAD_OP, Llama 3's "not resharded after forward") is ZeRO-2, not FULL_SHARD.
ZERO_PATTERNS: tuple[tuple[str, ZeroStage | None], ...] = (
    (r"fsdp\s*=\s*no", None),
    (r"zero[- ]?2|shard_grad_op|not resharded after forward|reshard_after_forward\s*=\s*false", 2),
    (r"zero[- ]?3|full_shard|fsdp", 3),
    (r"zero[- ]?1|distributed optimi[sz]er", 1),
)
# A NIC figure at or above this is a whole node's (8 x 200G, 8 x 400G); below it, one GPU's NIC.
NODE_NIC_GBIT_S = 800


@dataclass
class RunCase:
    """One predictable row, resolved."""

    id: str
    model: ModelSpec
    work: Workload
    layout: Layout
    accelerator: Accelerator
    cluster: Cluster
    stack: str
    metric: str
    measured: float | None
    flops_basis: str  # "model" (MFU) or "hardware" (HFU, recompute counted)
    peak_basis: str  # "bf16" or "fp8": the peak a utilisation figure divides by
    is_moe: bool
    moe_imbalance: float
    source: str
    notes: str = ""
    assumptions: list[str] = field(default_factory=list)


def _number(row: dict[str, str], key: str) -> float | None:
    """A number cell: `8192`, `8,192`, `8k` (×1024 for seq_len, else ×1000), `1.5M`; None if empty."""
    text = (row.get(key) or "").strip().lower().replace(",", "").replace("_", "")
    match = re.fullmatch(r"([0-9.]+(?:e[+-]?\d+)?)\s*([km]?)", text)
    if not match:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    scale = {"": 1, "k": 1024 if key == "seq_len" else 1000, "m": 1e6}[match.group(2)]
    return value * scale


def resolve_accelerator(text: str) -> Accelerator | None:
    """Map a free-text GPU name ('A100-SXM4-40GB (1600Gbps RoCE)', 'H100 80GB', 'Ascend 910B-class')
    to a catalog accelerator: the longest hyphen-prefix of the name that is a catalog slug or
    alias, then any token that is one; a memory size in the text picks between variants, and a
    size no catalog variant has (the 96 GB H100) gives the part with that memory."""
    if re.search(r"presumably|unnamed|not stated which", text.lower()):
        return None
    base = re.sub(r"\(.*?\)", " ", text).strip().lower()
    base = re.sub(r"^\d+\s*x\s*", "", base)  # "8xH100", "8 x H100"
    words = re.findall(r"[a-z0-9.]+", base) + re.findall(r"[a-z0-9.]+", text.lower())
    words += [f"{a}-{b}" for a, b in pairwise(words)]  # "Gaudi 2" → gaudi-2
    memory = re.search(r"(\d+)\s*gb\b", text.lower())
    candidates: list[str] = []
    joined = "-".join(re.findall(r"[a-z0-9.]+", base))
    parts = joined.split("-") if joined else []
    candidates += ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    candidates += words
    for name in candidates:
        if not name or name.isdigit():
            continue
        try:
            found = CATALOG.accelerator(name)
        except SpecError:
            continue
        if memory and found.memory_gb and abs(found.memory_gb - float(memory.group(1))) > 1:
            sibling = next(
                (
                    a
                    for a in CATALOG.accelerators
                    if a.memory_gb
                    and abs(a.memory_gb - float(memory.group(1))) <= 1
                    and a.slug.split("-")[0] == found.slug.split("-")[0]
                ),
                None,
            )
            return sibling or found.model_copy(update={"memory_gb": float(memory.group(1))})
        return found
    return None


def infer_stack(row: dict[str, str]) -> str:
    """The software stack of a row: its `stack` column, else keywords of its source and notes,
    else the stack-agnostic calibration (`any`)."""
    if (row.get("stack") or "").strip():
        return row["stack"].strip().lower()
    text = f"{row.get('source', '')} {row.get('notes', '')}".lower()
    for stack, keywords in STACK_KEYWORDS:
        if any(k in text for k in keywords):
            return stack
    return STACK_AGNOSTIC


def _precision(text: str) -> str:
    text = text.lower()
    if "fp8" in text:
        return "fp8"
    if "fp16" in text and "bf16" not in text:
        return "fp16"
    return "bf16"


def row_network(gpu_text: str, assumptions: list[str]) -> tuple[float | None, str]:
    """The scale-out bandwidth per node (Gb/s) and fabric a GPU cell states ('RoCE 400Gbps per
    GPU', '1600Gbps RoCE'): a figure says per GPU or per node, else its size decides."""
    text = gpu_text.lower()
    kind = "roce" if "roce" in text else "infiniband"
    match = re.search(r"(\d+)\s*gb(?:ps|/s|it/s)", text)
    if not match:
        return None, kind
    value = float(match.group(1))
    if "per node" in text:
        return value, kind
    if "per gpu" not in text:
        per = "node" if value >= NODE_NIC_GBIT_S else "GPU"
        assumptions.append(f"network {value:g} Gb/s read per {per} (the row does not say)")
        if per == "node":
            return value, kind
    return value * 8, kind


def row_zero_stage(notes: str, stack: str) -> tuple[ZeroStage, str]:
    """The ZeRO stage a row's notes name (FSDP variants, distributed optimizer), else its stack's."""
    lowered = notes.lower()
    for pattern, stage in ZERO_PATTERNS:
        if re.search(pattern, lowered):
            if stage is not None:
                return stage, f"ZeRO-{stage} from the notes ({re.search(pattern, lowered).group(0)!r})"  # type: ignore[union-attr]
            break
    stage = ZERO_BY_STACK.get(stack, 1)
    return stage, f"ZeRO-{stage}: the default of stack {stack}"


@cache
def reference_cluster(
    accelerator_slug: str,
    memory_gb: float | None,
    nodes: int,
    nic_gbit_s_per_node: float | None,
    nic_kind: str,
) -> Cluster:
    """A cluster of `nodes` 8-accelerator nodes for a published run: the catalog's node type for
    the accelerator when there is one, else a generic NVSwitch-class node from its figures; a
    memory size other than the catalog part's defines the accelerator inline."""
    node = next((n for n in CATALOG.node_types if n.accelerator == accelerator_slug), None)
    accel = CATALOG.accelerator(accelerator_slug)
    inline = [] if memory_gb == accel.memory_gb else [accel.model_copy(update={"memory_gb": memory_gb})]
    if node is None:
        link = (accel.intra_node_bw_gb_s or 200.0) / 2
        node = NodeType(
            slug=f"{accelerator_slug}-x8",
            name=f"8x {accel.name} (generic)",
            accelerator=accelerator_slug,
            accelerators_per_node=8,
            topology=IntraNodeTopology(kind="nvswitch", link_bw_gb_s=link),
            nics=[NicGroup(count=8, gbit_s=400, kind="infiniband")],
            cpu_cores=96,
            memory_gb=1024,
            source="Suanli generic node for a published run (8 accelerators, 8x 400G NICs)",
        )
    if nic_gbit_s_per_node:
        nics = [NicGroup(count=8, gbit_s=nic_gbit_s_per_node / 8, kind=nic_kind)]  # type: ignore[arg-type]
        node = node.model_copy(update={"slug": f"{node.slug}-nic", "nics": nics})
    return Cluster(
        name=f"ref-{accelerator_slug}",
        pools=[Pool(name="pool", node_type=node.slug, nodes=nodes)],
        node_types=[node],
        accelerators=inline,
    )


def _catalog_model(row: dict[str, str], n_layers: int, hidden: int) -> ModelSpec | None:
    """The catalog model the row names, when its shape agrees (brings MLA, shared experts)."""
    name = re.sub(r"[^a-z0-9]", "", (row.get("model_name") or "").lower())
    for model in CATALOG.models:
        key = re.sub(r"[^a-z0-9]", "", model.slug)
        if key and key in name and model.n_layers == n_layers and model.hidden == hidden:
            return model
    return None


def row_model(row: dict[str, str], assumptions: list[str]) -> ModelSpec:
    n_layers, hidden = int(_number(row, "n_layers") or 0), int(_number(row, "hidden") or 0)
    known = _catalog_model(row, n_layers, hidden)
    if known is not None:
        assumptions.append(f"shape details from catalog model {known.slug}")
        return known
    ffn = int(_number(row, "ffn_hidden") or 0)
    heads = _number(row, "n_heads")
    if heads is None:
        heads = max(1, hidden // DEFAULT_HEAD_DIM)
        assumptions.append(f"n_heads not given: assumed {int(heads)} (head dim {DEFAULT_HEAD_DIM})")
    kv = _number(row, "n_kv_heads")
    gated_text = (row.get("gated_mlp") or "").strip().lower()
    gated = gated_text in ("1", "true", "yes") if gated_text else ffn != 4 * hidden
    if not gated_text:
        assumptions.append(
            f"MLP {'gated (SwiGLU)' if gated else 'ungated'}: ffn_hidden {'!=' if gated else '=='} 4·hidden"
        )
    experts, top_k = _number(row, "moe_experts"), _number(row, "moe_topk")
    moe = MoE(experts=int(experts), top_k=int(top_k), expert_ffn_hidden=ffn) if experts and top_k else None
    seq = int(_number(row, "seq_len") or 1)
    return ModelSpec(
        slug="published-run",
        name=row.get("model_name") or "published run",
        n_layers=n_layers,
        hidden=hidden,
        n_heads=int(heads),
        n_kv_heads=int(kv) if kv else None,
        head_dim=hidden // int(heads) if hidden % int(heads) else None,
        ffn_hidden=ffn,
        gated_mlp=gated,
        vocab=int(_number(row, "vocab") or 1),
        max_seq_len=seq,
        moe=moe,
    )


METRIC_ALIASES = {
    "mfu_percent": "mfu",
    "mfu_pct": "mfu",
    "hfu": "hfu",
    "tflops": "tflops_per_gpu",
    "model_tflops_per_gpu": "tflops_per_gpu",
    "tflops_per_s_per_gpu": "tflops_per_gpu",
    "tokens_per_sec_per_gpu": "tokens_per_s_per_gpu",
    "tokens_per_second_per_gpu": "tokens_per_s_per_gpu",
    "tokens_per_sec": "tokens_per_s",
    "step_time": "step_time_s",
    "step_time_sec": "step_time_s",
}
SHAPE_FIELDS = (
    "n_layers",
    "hidden",
    "n_heads",
    "n_kv_heads",
    "ffn_hidden",
    "vocab",
    "moe_experts",
    "moe_topk",
)


def catalog_model_by_name(name: str) -> ModelSpec | None:
    """The catalog model a free-text name means ('LLAMA3_70B', 'Llama 3.1 70B', 'GPT3-175B')."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if not key:
        return None
    for model in CATALOG.models:
        variants = {model.slug, re.sub(r"\.\d+", "", model.slug), model.name.lower()}
        if any(re.sub(r"[^a-z0-9]", "", v) == key for v in variants):
            return model
    for model in CATALOG.models:
        variants = {model.slug, re.sub(r"\.\d+", "", model.slug)}
        if any(re.sub(r"[^a-z0-9]", "", v) in key for v in variants):
            return model
    return None


def normalise_row(raw: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Canonical column names and metric, GPU count from the layout, percentages as fractions,
    and missing model-shape fields from the catalog model the row names — each change noted."""
    row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
    notes: list[str] = []
    metric = re.sub(r"[^a-z0-9_]", "_", row.get("measured_metric", "").lower()).strip("_")
    metric = METRIC_ALIASES.get(metric, metric)
    value = _number(row, "measured_value")
    if metric == "step_time_ms" and value is not None:
        metric, row["measured_value"] = "step_time_s", str(value / 1000)
    if metric in ("mfu", "hfu") and value is not None and value > 1:
        row["measured_value"] = str(value / 100)
        notes.append(f"measured {metric} {value:g} read as a percentage")
    layout_gpus = 1
    for key in ("tp", "pp", "cp", "dp"):
        layout_gpus *= int(_number(row, key) or 1)
    if not row.get("n_gpus") and row.get("dp"):
        row["n_gpus"] = str(layout_gpus)
        notes.append(f"n_gpus = tp·pp·cp·dp = {layout_gpus}")
    if metric == "tokens_per_s" and value is not None and _number(row, "n_gpus"):
        metric, row["measured_value"] = "tokens_per_s_per_gpu", str(value / (_number(row, "n_gpus") or 1))
    row["measured_metric"] = metric
    absent = [f for f in SHAPE_FIELDS[:6] if not row.get(f)]
    known = catalog_model_by_name(row.get("model_name", "")) if absent else None
    if known is not None:
        catalog = {
            "n_layers": known.n_layers,
            "hidden": known.hidden,
            "n_heads": known.n_heads,
            "n_kv_heads": known.kv_heads,
            "ffn_hidden": known.moe.expert_ffn_hidden if known.moe else known.ffn_hidden,
            "vocab": known.vocab,
        }
        for field in absent:
            row[field] = str(catalog[field])
        notes.append(f"{', '.join(absent)} from catalog model {known.slug}")
    notes += fill_standard_ratios(row)
    return row, notes


# Vocabulary of a model family, matched in the model name (first match wins): Llama 3 and 2
# (tokenizer configs, 128,256 and 32,000), OPT (config.json, 50,272), GPT-2 BPE as Megatron-LM
# pads it (50,257 → 51,200, the vocabulary of the Megatron papers' GPT runs).
FAMILY_VOCAB = (
    (r"llama[ -_]?3", 128256),
    (r"llama[ -_]?2", 32000),
    (r"\bopt\b", 50272),
    (r"gpt|mt-nlg|megatron|bloom", 51200),
)
SWIGLU_FAMILIES = r"llama|mistral|mixtral|qwen|deepseek|gemma"


def fill_standard_ratios(row: dict[str, str]) -> list[str]:
    """Shape fields a row omits and the catalog could not give, from standard ratios, each noted:
    the FFN width Megatron-LM's validate_args derives (int(8h/3 / 64)·64 with SwiGLU, else 4h)
    and the vocabulary of the model's family."""
    notes = []
    name = (row.get("model_name") or "").lower()
    hidden = _number(row, "hidden")
    if not row.get("ffn_hidden") and hidden:
        swiglu = bool(re.search(SWIGLU_FAMILIES, name)) or (row.get("gated_mlp") or "").lower() in (
            "1",
            "true",
            "yes",
        )
        ffn = int(4 * hidden * 2 / 3 / 64) * 64 if swiglu else int(4 * hidden)
        row["ffn_hidden"] = str(ffn)
        row.setdefault("gated_mlp", "true" if swiglu else "false")
        notes.append(f"ffn_hidden not given: {ffn} ({'SwiGLU 8h/3' if swiglu else '4h'}, Megatron's default)")
    if not row.get("vocab"):
        vocab = next((v for pattern, v in FAMILY_VOCAB if re.search(pattern, name)), None)
        if vocab:
            row["vocab"] = str(vocab)
            notes.append(f"vocab not given: {vocab}, the vocabulary of the model's family")
    return notes


# Largest value a published run can have in each field: beyond it the cell is a typo, not a run.
PLAUSIBLE_MAX = {
    "n_layers": 10_000,
    "hidden": 1_000_000,
    "n_heads": 100_000,
    "ffn_hidden": 10_000_000,
    "vocab": 10_000_000,
    "seq_len": 100_000_000,
    "n_gpus": 10_000_000,
    "global_batch": 100_000_000,
    "micro_batch": 100_000,
    "tp": 100_000,
    "pp": 100_000,
    "cp": 100_000,
    "ep": 100_000,
}


def implausible_cells(row: dict[str, str]) -> list[str]:
    """Cells that are not a number where one is due (nan, text) or outside 1..PLAUSIBLE_MAX."""
    reasons = []
    for key, limit in PLAUSIBLE_MAX.items():
        text = (row.get(key) or "").strip()
        if not text:
            continue
        value = _number(row, key)
        if value is None or not math.isfinite(value):
            reasons.append(f"{key} ({text!r} is not a number)")
        elif not 1 <= value <= limit:
            reasons.append(f"{key} ({text} is outside 1..{limit:,})")
    return reasons


def parse_row(raw: dict[str, str]) -> RunCase | list[str]:
    """A resolved case, or the list of reasons (missing or implausible fields) the row cannot be
    predicted."""
    row, normalised = normalise_row(raw)
    implausible = implausible_cells(row)
    if implausible:
        return implausible
    missing = [key for key in REQUIRED if not (row.get(key) or "").strip()]
    accelerator = resolve_accelerator(row.get("gpu") or "") if (row.get("gpu") or "").strip() else None
    if (row.get("gpu") or "").strip() and accelerator is None:
        missing.append(f"gpu ({row['gpu']!r} matches no catalog accelerator)")
    elif accelerator is not None and accelerator.peak("bf16") is None and accelerator.peak("fp16") is None:
        missing.append(f"gpu ({accelerator.slug} has no published 16-bit peak)")
    metric = row["measured_metric"] or "mfu"  # nothing measured: predict, and report MFU
    if metric not in (*METRICS, "hfu"):
        missing.append(f"measured_metric ({metric!r} is not one of {', '.join(METRICS)})")
    if missing:
        return missing
    assert accelerator is not None
    assumptions: list[str] = list(normalised)
    try:
        model = row_model(row, assumptions)
    except (ValueError, SpecError) as exc:
        return [f"model shape ({str(exc).splitlines()[0]})"]
    n_gpus = int(_number(row, "n_gpus") or 0)
    tp, pp = int(_number(row, "tp") or 1), int(_number(row, "pp") or 1)
    cp, ep = int(_number(row, "cp") or 1), int(_number(row, "ep") or 1)
    if n_gpus % (tp * pp * cp):
        return [f"layout (n_gpus {n_gpus} is not a multiple of tp·pp·cp = {tp * pp * cp})"]
    dp = n_gpus // (tp * pp * cp)
    if _number(row, "dp") and int(_number(row, "dp") or 0) != dp:
        assumptions.append(f"dp = n_gpus/(tp·pp·cp) = {dp} (row says {int(_number(row, 'dp') or 0)})")
    stack = infer_stack(row)
    micro = _number(row, "micro_batch")
    local_batch = int(_number(row, "global_batch") or 0) // dp
    if micro is None and stack == "torchtitan" and pp > 1 and local_batch % pp == 0 and local_batch >= pp:
        micro = local_batch // pp
        assumptions.append(
            f"micro_batch not given: {micro}, torchtitan's default of as many micro-batches as pipeline "
            "stages (experimental.pipeline_parallel_microbatches)"
        )
    elif micro is None:
        micro = 1
        assumptions.append("micro_batch not given: assumed 1")
    notes = row.get("notes") or ""
    vpp_match = re.search(r"\bVP=(\d+)", notes)
    vpp = int(_number(row, "vpp") or (vpp_match.group(1) if vpp_match else 1))
    if vpp == 1 and pp > 1 and re.search(r"\binterleaved\b", notes.lower()):
        vpp = 2
        assumptions.append("interleaved schedule, stages per rank not given: assumed 2")
    vpp = vpp if pp > 1 else 1
    recompute_text = (row.get("recompute") or "").strip().lower()
    recompute: Recompute = next((m for m in ("full", "selective") if recompute_text.startswith(m)), "none")
    if recompute_text in ("yes", "true", "on", "1", "activation checkpointing"):
        recompute = "full"
    if stack == STACK_AGNOSTIC:
        assumptions.append("software stack not named: the stack-agnostic calibration")
    zero, zero_note = row_zero_stage(notes, stack)
    if zero == 3 and pp > 1 and stack == "torchtitan":
        zero = 1
        zero_note += (
            "; under PP torchtitan's FSDP keeps parameters and gradients unsharded across micro-batches "
            "(reshard_after_forward 'default' is off with PP, the schedule reduce-scatters after the last "
            "micro-batch): ZeRO-1 memory and traffic"
        )
    assumptions.append(zero_note)
    eager = bool(re.search(r"\beager\b", notes.lower()))
    if eager:
        assumptions.append("element-wise kernels unfused: PyTorch eager mode (from the notes)")
    try:
        layout = Layout(
            tp=tp,
            pp=pp,
            vpp=vpp,
            dp=dp,
            ep=ep,
            cp=cp,
            zero_stage=zero,
            micro_batch=int(micro),
            recompute=recompute,
            sequence_parallel=tp > 1,
            schedule="Interleaved1F1B" if vpp > 1 else "1F1B",
        )
    except ValueError as exc:
        return [f"layout ({str(exc).splitlines()[0]})"]
    nic_gbit_s, nic_kind = row_network(row.get("gpu") or "", assumptions)
    catalog_memory = CATALOG.accelerator(accelerator.slug).memory_gb
    if accelerator.memory_gb != catalog_memory:
        assumptions.append(
            f"{accelerator.slug} with {accelerator.memory_gb:g} GB (catalog part {catalog_memory:g} GB); "
            "its catalog peak and bandwidth, any power cap not modelled"
        )
    cluster = reference_cluster(
        accelerator.slug, accelerator.memory_gb, math.ceil(n_gpus / 8), nic_gbit_s, nic_kind
    )
    precision = _precision(row.get("precision") or "")
    lowered = notes.lower()
    peak_basis = "bf16" if "bf16 peak" in lowered or precision != "fp8" else "fp8"
    flops_basis = "model"
    if metric == "tflops_per_gpu" and (
        "counts recompute" in lowered or (stack == "megatron" and recompute == "full")
    ):
        flops_basis = "hardware"
    if metric == "hfu":
        metric, flops_basis = "mfu", "hardware"
    case = RunCase(
        id=row.get("id") or "?",
        model=model,
        work=Workload(
            int(_number(row, "seq_len") or 0), int(_number(row, "global_batch") or 0), precision, eager
        ),
        layout=layout,
        accelerator=accelerator,
        cluster=cluster,
        stack=stack,
        metric=metric,
        measured=_number(row, "measured_value"),
        flops_basis=flops_basis,
        peak_basis=peak_basis,
        is_moe=model.is_moe,
        moe_imbalance=BALANCED if "force-balanced" in lowered else LEARNED_ROUTING,
        source=row.get("source") or "",
        notes=notes,
        assumptions=assumptions,
    )
    return case if recompute_text else with_least_recompute(case)


def ran_within_memory(prediction: Prediction, accelerator: Accelerator) -> bool:
    """Whether a run that happened fits without the planner's fragmentation margin: the margin is
    the planner's allowance for what it cannot know; a finished run shows it was not all needed."""
    assert accelerator.memory_gb is not None
    margin_gb = RESERVE_FRACTION * accelerator.memory_gb
    return prediction.memory_gb_per_gpu - margin_gb <= accelerator.memory_gb


def with_least_recompute(case: RunCase) -> RunCase:
    """A run that happened fitted its memory: where the row does not say how it recomputed, the
    cheapest recompute (none, selective, full) under which its layout fits, noted."""
    for mode in ("none", "selective", "full"):
        layout = case.layout.model_copy(update={"recompute": mode})
        trial = replace(case, layout=layout, assumptions=[*case.assumptions])
        if ran_within_memory(predict_case(trial), case.accelerator):
            trial.assumptions.append(f"recompute not given: {mode}, the least under which the layout fits")
            return trial
    case.assumptions.append("recompute not given: assumed none (no recompute mode fits)")
    return case


@dataclass(frozen=True)
class Prediction:
    id: str
    metric: str
    predicted: float
    measured: float | None
    mfu: float
    step_time_s: float
    tokens_per_s_per_gpu: float
    tflops_per_gpu: float
    memory_gb_per_gpu: float
    fits: bool
    basis: str
    estimate: StepEstimate

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "mfu": round(self.mfu, 4),
            "step_time_s": round(self.step_time_s, 4),
            "tokens_per_s_per_gpu": round(self.tokens_per_s_per_gpu, 1),
            "tflops_per_gpu": round(self.tflops_per_gpu, 1),
            "memory_gb_per_gpu": round(self.memory_gb_per_gpu, 1),
            "fits": self.fits,
            "metric": self.metric,
            "predicted": round(self.predicted, 4),
            "measured": self.measured,
            "basis": self.basis,
        }


def predict_case(case: RunCase, efficiency: float | None = None) -> Prediction:
    """Predict the row's metrics with its own definitions."""
    estimate = estimate_step(
        case.model,
        case.work,
        case.layout,
        case.cluster,
        "pool",
        stack=case.stack,
        efficiency=efficiency,
        moe_imbalance=case.moe_imbalance,
    )
    gpus = case.layout.world_size
    per_gpu = estimate.tokens_per_s / gpus
    if case.flops_basis == "hardware":
        flops = hardware_flops_per_token(case.model, case.work.seq_len, case.layout.recompute)
    else:
        flops = model_flops_per_token(case.model, case.work.seq_len)
    tflops = flops * per_gpu / 1e12
    peak = case.accelerator.peak("fp8") if case.peak_basis == "fp8" else None
    peak = peak or case.accelerator.peak("bf16") or case.accelerator.peak("fp16") or 1.0
    values = {
        "mfu": tflops / peak,
        "tflops_per_gpu": tflops,
        "tokens_per_s_per_gpu": per_gpu,
        "step_time_s": estimate.step_time_s,
    }
    basis = f"{case.flops_basis} FLOPs (full-sequence attention) / {case.peak_basis} peak {peak:g} TFLOPS"
    if case.metric == "step_time_s":
        basis += "; step time includes the optimizer"
    return Prediction(
        id=case.id,
        metric=case.metric,
        predicted=values[case.metric],
        measured=case.measured,
        mfu=values["mfu"],
        step_time_s=estimate.step_time_s,
        tokens_per_s_per_gpu=per_gpu,
        tflops_per_gpu=tflops,
        memory_gb_per_gpu=estimate.memory_gb_per_gpu,
        fits=estimate.fits,
        basis=basis,
        estimate=estimate,
    )


NOT_UTF8 = "__not_utf8__"  # the key a row carries when some of its bytes are not UTF-8


def read_runs(path: str | Path) -> list[dict[str, str]]:
    """Rows of a runs CSV; a missing file or a file without the needed columns is a SpecError. A
    row with bytes that are not UTF-8 is kept, marked, for the caller to report on its own."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        columns = {(c or "").strip().lower() for c in reader.fieldnames or []}
        absent = [c for c in ("id", "gpu") if c not in columns]
        if absent:
            raise SpecError(f"{path}: missing column(s) {', '.join(absent)}")
        rows = []
        for row in reader:
            bad = [k for k, v in row.items() if k and isinstance(v, str) and _has_surrogates(v)]
            rows.append({**row, NOT_UTF8: ", ".join(bad)} if bad else row)
        return rows


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def row_problems(row: dict[str, str]) -> list[str]:
    """Reasons a row read from a file cannot be parsed at all (bytes that are not UTF-8)."""
    bad = row.get(NOT_UTF8)
    return [f"{bad} (bytes that are not UTF-8)"] if bad else []
