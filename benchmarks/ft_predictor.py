"""How good is the failure predictor on public data, and what would it buy the interval planner?

Titan GPU lifetimes (Cox model, landmark split), the Loghub BGL sample (log alert detector,
earliest 70 % of lines train), then each predictor's precision/recall fed to the planner at
Llama 3 scale.

Usage: .venv/bin/python benchmarks/ft_predictor.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from suanli.ft.ettr import category_share, load_llama3_breakdown
from suanli.ft.interval import best_ettr, job_mtbf_s
from suanli.ft.predictor import AlarmQuality, evaluate_bgl, evaluate_titan

STALL_S, RESTART_S = 5.0, 120.0


def alarms(quality: AlarmQuality) -> dict:
    return asdict(quality) | {"precision": quality.precision, "recall": quality.recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    out: dict = {"titan": [], "bgl": []}

    for train, test in [
        ("2015-01-01", "2016-01-01"),
        ("2016-01-01", "2017-01-01"),
        ("2017-01-01", "2018-01-01"),
    ]:
        started = time.perf_counter()
        report = evaluate_titan(train, test)
        row = asdict(report) | {"alarms_top5pct_30d": alarms(report.alarms_top5pct_30d)}
        out["titan"].append(row | {"elapsed_s": time.perf_counter() - started})

    for threshold in (0.3, 0.5, 0.7):
        started = time.perf_counter()
        report = evaluate_bgl(threshold=threshold)
        row = asdict(report) | {
            "threshold": threshold,
            "detector": alarms(report.detector),
            "fatal_level_baseline": alarms(report.fatal_level_baseline),
        }
        out["bgl"].append(row | {"elapsed_s": time.perf_counter() - started})

    # Feeding the planner: a GPU-history predictor sees only GPU failures (268 of Llama 3's 419).
    mtbf_s = job_mtbf_s(16_384, failures_per_1k_gpu_month=14.2)
    gpu_share = category_share(load_llama3_breakdown(), ["GPU"])
    titan_alarms = out["titan"][1]["alarms_top5pct_30d"]
    bgl_alarms = out["bgl"][1]["detector"]
    feeds = [
        ("none", 0.0, 1.0),
        ("Titan top-5 % (GPU failures only)", titan_alarms["recall"] * gpu_share, titan_alarms["precision"]),
        ("BGL detector (as if it had lead time)", bgl_alarms["recall"], bgl_alarms["precision"]),
    ]
    out["planner"] = [
        {
            "predictor": name,
            "recall": recall,
            "precision": precision,
            "stall_s": STALL_S,
            "restart_s": RESTART_S,
            "ettr": best_ettr(STALL_S, mtbf_s, RESTART_S, recall, precision),
        }
        for name, recall, precision in feeds
    ]

    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        "| train -> test landmark | GPUs train/test | test failures | C train | C test | C age only "
        "| C location only | top-5 % 30-day precision | recall | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in out["titan"]:
        a = row["alarms_top5pct_30d"]
        print(
            f"| {row['train_landmark']} -> {row['test_landmark']} | {row['train_gpus']}/{row['test_gpus']} "
            f"| {row['test_failures']} | {row['concordance_train']:.3f} | {row['concordance_test']:.3f} "
            f"| {row['concordance_test_age_only']:.3f} | {row['concordance_test_location_only']:.3f} "
            f"| {a['precision']:.3f} ({a['true_alarms']}/{a['alarms']}) "
            f"| {a['recall']:.3f} ({a['true_alarms']}/{a['failures']}) "
            f"| {row['elapsed_s']:.1f} |"
        )
    print(
        "\n| threshold | precision | recall | FATAL-rule precision | FATAL-rule recall "
        "| unseen kinds | missed |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in out["bgl"]:
        d, b = row["detector"], row["fatal_level_baseline"]
        print(
            f"| {row['threshold']} | {d['precision']:.3f} | {d['recall']:.3f} "
            f"| {b['precision']:.3f} | {b['recall']:.3f} "
            f"| {', '.join(row['unseen_test_categories'])} | {row['missed_by_category']} |"
        )
    print(
        "\n| predictor fed to the planner | recall | precision "
        f"| ETTR at {STALL_S} s stall, {RESTART_S} s restart |"
    )
    print("|---|---|---|---|")
    for row in out["planner"]:
        print(f"| {row['predictor']} | {row['recall']:.3f} | {row['precision']:.3f} | {row['ettr']:.4f} |")


if __name__ == "__main__":
    main()
