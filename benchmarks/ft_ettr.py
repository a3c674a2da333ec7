"""ETTR questions, answered by the analytic planner and checked by Monte-Carlo.

1. Which distribution fits the LANL 1996-2005 failure gaps? (Weibull, per system)
2. Does the simulator agree with Daly's exact formula where its assumptions hold?
3. What stall and restart times reach >= 99 % ETTR at 16,384 GPUs under Llama 3's failure rate,
   with Poisson failures and with LANL-shaped (Weibull) clustered failures, with and without a
   failure predictor?

Usage: .venv/bin/python benchmarks/ft_ettr.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from suanli.ft.ettr import (
    CheckpointRun,
    WeibullGaps,
    category_share,
    lanl_weibull_fits,
    load_llama3_breakdown,
    simulate_ettr,
)
from suanli.ft.interval import (
    HOUR_S,
    best_ettr,
    daly_ettr,
    expected_ettr,
    failures_per_1k_gpu_month,
    job_mtbf_s,
    max_restart_s_for_ettr,
    optimal_interval_s,
)

LLAMA3_GPUS = 16_384
RUN_S = 54 * 24 * HOUR_S  # Llama 3's 54-day pre-training window
TARGET = 0.99


def mc_frontier_restart_s(
    stall_s: float, gaps: WeibullGaps, mtbf_s: float, runs: int, recall: float, precision: float
) -> float:
    """Largest restart whose simulated mean ETTR is >= TARGET (bisection on common random numbers)."""

    def ettr(restart_s: float) -> float:
        run = CheckpointRun(
            optimal_interval_s(stall_s, mtbf_s, recall, precision), stall_s, restart_s, recall, precision
        )
        return simulate_ettr(run, gaps, RUN_S, runs=runs, seed=42).mean

    low, high = 0.0, 600.0
    if ettr(low) < TARGET:
        return 0.0
    for _ in range(22):
        middle = (low + high) / 2
        low, high = (middle, high) if ettr(middle) >= TARGET else (low, middle)
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer Monte-Carlo runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    runs = 100 if args.quick else 400
    started = time.perf_counter()
    out: dict = {}

    fits = lanl_weibull_fits()
    out["lanl_fits"] = [
        {
            "system": system,
            "gaps": fit.n_gaps,
            "shape": fit.shape,
            "mean_gap_h": fit.mean_s / HOUR_S,
            "weibull_preferred": fit.weibull_preferred,
        }
        for system, fit in fits.items()
    ]
    shapes = sorted(fit.shape for fit in fits.values())
    lanl_shape = shapes[len(shapes) // 2]
    out["lanl_median_shape"] = lanl_shape

    mtbf_s = job_mtbf_s(
        LLAMA3_GPUS, failures_per_1k_gpu_month=failures_per_1k_gpu_month(419, LLAMA3_GPUS, 54)
    )
    out["llama3_mtbf_h"] = mtbf_s / HOUR_S

    agreement = []
    for interval_s, stall_s, restart_s, mtbf in [
        (600.0, 10.0, 300.0, 3 * HOUR_S),
        (2000.0, 60.0, 1800.0, 3 * HOUR_S),
        (66.6, 0.2, 45.0, mtbf_s),
        (330.0, 5.0, 120.0, mtbf_s),
    ]:
        estimate = simulate_ettr(
            CheckpointRun(interval_s, stall_s, restart_s), WeibullGaps(mtbf), 400 * mtbf, runs=runs, seed=1
        )
        agreement.append(
            {
                "interval_s": interval_s,
                "stall_s": stall_s,
                "restart_s": restart_s,
                "mtbf_h": mtbf / HOUR_S,
                "daly": daly_ettr(interval_s, stall_s, mtbf, restart_s),
                "monte_carlo": estimate.mean,
                "std_error": estimate.std_error,
            }
        )
    for recall, precision in [(0.3, 0.9), (0.6, 0.3)]:
        stall_s, restart_s, mtbf = 5.0, 120.0, 3 * HOUR_S
        interval_s = optimal_interval_s(stall_s, mtbf, recall, precision)
        run = CheckpointRun(interval_s, stall_s, restart_s, recall, precision)
        estimate = simulate_ettr(run, WeibullGaps(mtbf), 400 * mtbf, runs=runs, seed=2)
        agreement.append(
            {
                "interval_s": interval_s,
                "stall_s": stall_s,
                "restart_s": restart_s,
                "mtbf_h": mtbf / HOUR_S,
                "recall": recall,
                "precision": precision,
                "daly": expected_ettr(interval_s, stall_s, mtbf, restart_s, recall, precision),
                "monte_carlo": estimate.mean,
                "std_error": estimate.std_error,
            }
        )
    out["agreement"] = agreement

    # A GPU-telemetry predictor sees only GPU failures: 268 of Llama 3's 419 (Dubey et al., Table 5).
    gpu_share = category_share(load_llama3_breakdown(), ["GPU"])
    out["llama3_gpu_share"] = gpu_share
    scenarios = [("no predictor", 0.0, 1.0), ("GPU predictor r=0.5 p=0.5", 0.5 * gpu_share, 0.5)]
    frontier = []
    for name, recall, precision in scenarios:
        for stall_s in (0.01, 0.05, 0.1, 0.2, 0.3, 0.5):
            analytic = max_restart_s_for_ettr(TARGET, stall_s, mtbf_s, recall, precision)
            row = {"scenario": name, "stall_s": stall_s, "max_restart_s_analytic": analytic}
            for label, gaps in (
                ("poisson", WeibullGaps(mtbf_s)),
                ("weibull", WeibullGaps(mtbf_s, lanl_shape)),
            ):
                row[f"max_restart_s_mc_{label}"] = mc_frontier_restart_s(
                    stall_s, gaps, mtbf_s, runs, recall, precision
                )
            frontier.append(row)
    out["frontier_99"] = frontier
    out["examples"] = [
        {"stall_s": s, "restart_s": r, "ettr": best_ettr(s, mtbf_s, r)}
        for s, r in [(0.2, 45.0), (1.0, 60.0), (5.0, 120.0), (10.0, 600.0), (30.0, 1800.0)]
    ]
    out["runs"] = runs
    out["elapsed_s"] = time.perf_counter() - started

    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"Llama 3 job MTBF: {out['llama3_mtbf_h']:.3f} h; LANL median Weibull shape {lanl_shape:.3f}\n")
    print("| system | gaps | shape | mean gap h | Weibull preferred |\n|---|---|---|---|---|")
    for fit in out["lanl_fits"]:
        print(
            f"| {fit['system']} | {fit['gaps']} | {fit['shape']:.3f} | {fit['mean_gap_h']:.1f} "
            f"| {fit['weibull_preferred']} |"
        )
    print(
        "\n| interval s | stall s | restart s | MTBF h | r, p | analytic | Monte-Carlo ± s.e. |"
        "\n|---|---|---|---|---|---|---|"
    )
    for row in agreement:
        predictor = f"{row['recall']}, {row['precision']}" if "recall" in row else "-"
        print(
            f"| {row['interval_s']:.1f} | {row['stall_s']} | {row['restart_s']} | {row['mtbf_h']:.2f} "
            f"| {predictor} "
            f"| {row['daly']:.5f} | {row['monte_carlo']:.5f} ± {row['std_error']:.5f} |"
        )
    print(
        "\n| scenario | stall s | max restart s (analytic) | MC Poisson | MC Weibull |\n|---|---|---|---|---|"
    )
    for row in frontier:
        analytic = (
            "unreachable" if row["max_restart_s_analytic"] is None else f"{row['max_restart_s_analytic']:.1f}"
        )
        print(
            f"| {row['scenario']} | {row['stall_s']} | {analytic} | {row['max_restart_s_mc_poisson']:.1f} "
            f"| {row['max_restart_s_mc_weibull']:.1f} |"
        )
    print("\n| stall s | restart s | expected ETTR |\n|---|---|---|")
    for row in out["examples"]:
        print(f"| {row['stall_s']} | {row['restart_s']} | {row['ettr']:.4f} |")
    print(f"\n{runs} runs per Monte-Carlo point; {out['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()
