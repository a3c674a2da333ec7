"""A comparison baseline we run ourselves: llm-analysis 0.2.2 (cli99/llm-analysis, PyPI) predicting the
same published runs as `benchmarks/planner_accuracy.py`, from the same parsed inputs.

    python benchmarks/planner_baselines.py [--runs RUNS.csv] [--heldout HELDOUT.csv]

Needs the `compare` extra (`pip install -e '.[compare]'`). Each row is parsed once by
`suanli.perf.runs.parse_row` (the model shape, layout, accelerator and every filled-in field our
model uses) and handed to llm-analysis's `LLMAnalysis.training`: its GPU is our catalog entry
(16-bit peak, FP8 peak as its 8-bit peak for FP8 rows, HBM, NVLink and NIC bandwidth), its
parallelism our TP/PP/DP/EP and sequence parallelism, ZeRO stage and recomputation the row's.
llm-analysis has no context parallelism, so rows with CP > 1 are not predicted by it (counted).

Its step time is FLOPs / (GPUs in the model-parallel group × peak × `flops_efficiency`), so the
one number it needs is that efficiency. Three settings, each reported:
- `default`: the package's default (1.0, the peak);
- `0.5`: the value its constant.py names for Megatron-LM training;
- `fitted`: the best it offers on the same inputs as ours — one efficiency per accelerator, the
  median implied by that accelerator's rows of RUNS.csv (what our model is fitted on), applied to
  HELDOUT.csv (never used for fitting), falling back to the median of all rows.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from suanli.perf.calibration import lookup
from suanli.perf.fit import Factor, fit_factors, implied_efficiency, source_group
from suanli.perf.flops import hardware_flops_per_token, model_flops_per_token
from suanli.perf.runs import RunCase, parse_row, predict_case, read_runs
from suanli.spec.datasets import dataset_path

DOCUMENTED_EFFICIENCY = 0.5  # llm_analysis/constant.py: "achieved by Megatron-LM is ~0.5"


@dataclass(frozen=True)
class Baseline:
    case: RunCase
    step_s_at_peak: float  # llm-analysis's step time at flops_efficiency 1


def load(path: Path) -> list[RunCase]:
    cases = []
    for row in read_runs(path):
        parsed = parse_row(row)
        if not isinstance(parsed, list) and parsed.measured:
            cases.append(parsed)
    return cases


def llm_analysis_step_s(case: RunCase) -> float | None:
    """llm-analysis's training step time at flops_efficiency 1; None when it cannot express the row."""
    from llm_analysis.analysis import ActivationRecomputation, DSZeRO, LLMAnalysis
    from llm_analysis.config import DtypeConfig, GPUConfig, ModelConfig, ParallelismConfig

    layout, model, accel = case.layout, case.model, case.accelerator
    if layout.cp > 1:
        return None
    moe = model.moe
    ffn = moe.expert_ffn_hidden if moe else model.ffn_hidden
    model_config = ModelConfig(
        name=model.slug,
        num_layers=model.n_layers,
        n_head=model.n_heads,
        hidden_dim=model.hidden,
        vocab_size=model.vocab,
        max_seq_len=case.work.seq_len,
        num_key_value_heads=model.kv_heads,
        ffn_embed_dim=ffn,
        expansion_ratio=ffn / model.hidden,  # given with ffn, its divisibility assert is skipped
        moe_num_experts=moe.experts if moe else 1,
        moe_top_k=moe.top_k if moe else 1,
    )
    node = case.cluster.node_type_of("pool")
    nic_gb_s = sum(n.count * n.gbit_s for n in node.nics) / 8 / node.accelerators_per_node
    peak16 = accel.peak("bf16") or accel.peak("fp16")
    assert peak16 is not None  # parse_row only passes accelerators with a 16-bit peak
    fp8 = case.work.precision == "fp8"
    gpu = GPUConfig(
        name=accel.slug,
        mem_per_GPU_in_GB=accel.memory_gb or 80,
        hbm_bandwidth_in_GB_per_sec=accel.memory_bw_gb_s or 2000,
        intra_node_bandwidth_in_GB_per_sec=node.topology.link_bw_gb_s or 300,
        intra_node_min_message_latency=8e-6,
        peak_fp16_TFLOPS=peak16,
        peak_i8_TFLOPS=(accel.peak("fp8") or 2 * peak16) if fp8 else None,
        inter_node_bandwidth_in_GB_per_sec=nic_gb_s,
    )
    dtype = DtypeConfig(name="w8a8e16", weight_bits=8, activation_bits=8) if fp8 else DtypeConfig()
    parallel = ParallelismConfig(
        tp_size=layout.tp,
        pp_size=layout.pp,
        dp_size=layout.dp,
        ep_size=layout.ep,
        sp_size=layout.tp if layout.sequence_parallel else 1,
    )
    analysis = LLMAnalysis(model_config, gpu, dtype, parallel, flops_efficiency=1.0)
    steps = math.ceil(case.work.global_batch / (layout.dp * layout.micro_batch))
    recompute = {
        "none": ActivationRecomputation.NONE,
        "selective": ActivationRecomputation.SELECTIVE,
        "full": ActivationRecomputation.FULL,
    }[layout.recompute]
    summary = analysis.training(
        batch_size_per_gpu=layout.micro_batch,
        gradient_accumulation_steps=steps,
        global_batch_size=steps * layout.dp * layout.micro_batch,
        seq_len=case.work.seq_len,
        activation_recomputation=recompute,
        ds_zero=DSZeRO(layout.zero_stage),
        mlp_gated_linear_units=model.gated_mlp,
    )
    return float(summary["latency_per_iter"])


def metric_value(case: RunCase, step_s: float) -> float:
    """The row's metric for a step time, on the row's own FLOP and peak basis (as predict_case)."""
    per_gpu = case.work.global_batch * case.work.seq_len / step_s / case.layout.world_size
    if case.metric == "step_time_s":
        return step_s
    if case.metric == "tokens_per_s_per_gpu":
        return per_gpu
    if case.flops_basis == "hardware":
        flops = hardware_flops_per_token(case.model, case.work.seq_len, case.layout.recompute)
    else:
        flops = model_flops_per_token(case.model, case.work.seq_len)
    tflops = flops * per_gpu / 1e12
    if case.metric == "tflops_per_gpu":
        return tflops
    peak = case.accelerator.peak("fp8") if case.peak_basis == "fp8" else None
    return tflops / (peak or case.accelerator.peak("bf16") or case.accelerator.peak("fp16") or 1.0)


def error_pct(case: RunCase, step_s: float) -> float:
    assert case.measured
    return 100 * abs(metric_value(case, step_s) - case.measured) / case.measured


def run_baseline(cases: list[RunCase]) -> tuple[list[Baseline], list[RunCase]]:
    done, skipped = [], []
    for case in cases:
        step = llm_analysis_step_s(case)
        if step is None:
            skipped.append(case)
        else:
            done.append(Baseline(case, step))
    return done, skipped


def implied_baseline_efficiency(row: Baseline) -> float:
    """The flops_efficiency at which llm-analysis reproduces the row (its time is linear in 1/eff)."""
    assert row.case.measured
    at_peak = metric_value(row.case, row.step_s_at_peak)
    if row.case.metric == "step_time_s":
        return row.step_s_at_peak / row.case.measured
    return row.case.measured / at_peak


def fitted_efficiencies(rows: list[Baseline]) -> tuple[dict[str, float], float]:
    by_accel: dict[str, list[float]] = {}
    for row in rows:
        by_accel.setdefault(row.case.accelerator.slug, []).append(implied_baseline_efficiency(row))
    every = [e for values in by_accel.values() for e in values]
    return {slug: median(values) for slug, values in by_accel.items()}, median(every)


def per_source(errors: dict[str, list[float]]) -> float:
    return median(median(v) for v in errors.values())


def report(runs: Path, heldout: Path) -> str:
    logging.getLogger("__name__").setLevel(logging.ERROR)  # llm_analysis/logger.py's logger name
    train, _ = run_baseline(load(runs))
    fitted, fallback = fitted_efficiencies(train)
    held_cases = load(heldout)
    rows, skipped = run_baseline(held_cases)
    ours_factors = {(f.accelerator, f.stack): f.efficiency for f in _our_factors(runs)}
    settings = {"default": lambda r: 1.0, "0.5": lambda r: DOCUMENTED_EFFICIENCY}
    settings["fitted"] = lambda r: fitted.get(r.case.accelerator.slug, fallback)
    lines = [
        f"llm-analysis 0.2.2 on {len(rows)} of {len(held_cases)} held-out runs "
        f"({len(skipped)} with CP > 1 it cannot express: {', '.join(c.id for c in skipped) or 'none'}).",
        "",
        "| predictor | runs | median abs. error % over runs | over publications |",
        "|---|---:|---:|---:|",
    ]
    for name, efficiency in settings.items():
        errors: dict[str, list[float]] = {}
        for r in rows:
            errors.setdefault(source_group(r.case), []).append(
                error_pct(r.case, r.step_s_at_peak / efficiency(r))
            )
        flat = [e for v in errors.values() for e in v]
        lines.append(
            f"| llm-analysis, flops_efficiency {name} | {len(flat)} | {median(flat):.1f} | "
            f"{per_source(errors):.1f} |"
        )
    for label, subset in (("same runs", [r.case for r in rows]), ("all runs", held_cases)):
        ours: dict[str, list[float]] = {}
        for case in subset:
            factor, _ = lookup(ours_factors, case.accelerator.slug, case.stack)
            prediction = predict_case(case, factor)
            assert case.measured
            ours.setdefault(source_group(case), []).append(
                100 * abs(prediction.predicted - case.measured) / case.measured
            )
        flat = [e for v in ours.values() for e in v]
        lines.append(f"| suanli ({label}) | {len(flat)} | {median(flat):.1f} | {per_source(ours):.1f} |")
    lines += [
        "",
        "llm-analysis's fitted flops_efficiency per accelerator (median over RUNS.csv rows): "
        + ", ".join(f"{slug} {value:.3f}" for slug, value in sorted(fitted.items()))
        + f"; others {fallback:.3f}.",
    ]
    return "\n".join(lines) + "\n"


def _our_factors(runs: Path) -> list[Factor]:
    cases = load(runs)
    return fit_factors(cases, {case.id: implied_efficiency(case) for case in cases})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--heldout", type=Path, default=None)
    args = parser.parse_args()
    runs = args.runs or dataset_path("training_runs/training_runs.csv")
    heldout = args.heldout or dataset_path("training_runs/heldout_runs.csv")
    sys.stdout.write(report(runs, heldout))


if __name__ == "__main__":
    main()
