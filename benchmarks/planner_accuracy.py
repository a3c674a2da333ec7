"""Accuracy of the performance model against published training runs.

    python benchmarks/planner_accuracy.py [RUNS.csv] [--fit] [--out benchmarks/results/planner.md]

RUNS.csv defaults to datasets/training_runs/training_runs.csv.

Every predictable row is predicted on its own basis; the absolute percentage error against
`measured_value` is grouped by source, dense/MoE and BF16/FP8 (median and mean). Errors are
reported held-out (factors fitted without the row's source group) and in-sample. `--fit` also
rewrites suanli/calibration/perf_fitted.yaml with the factors fitted on all rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import mean, median

from suanli.perf.fit import (
    Evaluated,
    calibration_yaml,
    cross_validate,
    fit_factors,
    implied_efficiency,
    in_sample,
    source_group,
)
from suanli.perf.runs import parse_row, read_runs
from suanli.spec.datasets import dataset_path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = "training_runs/training_runs.csv"  # under datasets/
CALIBRATION = REPO / "suanli" / "calibration" / "perf_fitted.yaml"


def shown(path: Path) -> str:
    """`path` as written in the report and the calibration header: relative to the repo when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def summarise(rows: list[Evaluated], key) -> list[str]:  # type: ignore[no-untyped-def]
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row.abs_pct_error)
    lines = ["| group | rows | median abs. error % | mean abs. error % |", "|---|---:|---:|---:|"]
    for name, errors in sorted(groups.items()):
        lines.append(f"| {name} | {len(errors)} | {median(errors):.1f} | {mean(errors):.1f} |")
    return lines


def kind(row: Evaluated) -> str:
    return "MoE" if row.case.is_moe else "dense"


def precision(row: Evaluated) -> str:
    return "FP8" if row.case.work.precision == "fp8" else "BF16/FP16"


def report(runs: Path, fit: bool) -> str:
    started = time.perf_counter()
    cases, skipped = [], []
    for row in read_runs(runs):
        parsed = parse_row(row)
        if isinstance(parsed, list):
            skipped.append((row.get("id", "?"), parsed))
        elif parsed.measured:
            cases.append(parsed)
    implied = {case.id: implied_efficiency(case) for case in cases}
    factors = fit_factors(cases, implied)
    if fit:
        CALIBRATION.write_text(calibration_yaml(factors, shown(runs)), encoding="utf-8")
    held_out = cross_validate(cases, implied)
    fitted = in_sample(cases, factors)
    elapsed = time.perf_counter() - started
    out = [
        "## Accuracy against published runs",
        "",
        f"Command: `.venv/bin/python benchmarks/planner_accuracy.py {shown(runs)}{' --fit' if fit else ''}` "
        f"({len(cases)} predictable rows, {len(skipped)} not predictable; "
        f"{elapsed:.0f} s on the 2-core dev machine).",
        "",
        "Held-out = factors fitted on every *other* source group (leave-one-group-out); the row's own",
        "publication never informs its factor. In-sample = factors fitted on all rows (what ships in",
        "calibration.yaml). Absolute percentage error of the predicted metric vs `measured_value`.",
        "",
        "### Held-out, by dense/MoE",
        *summarise(held_out, kind),
        "",
        "### Held-out, by precision",
        *summarise(held_out, lambda r: f"{kind(r)} {precision(r)}"),
        "",
        "### Held-out, by source group",
        *summarise(held_out, lambda r: source_group(r.case)),
        "",
        "### In-sample (shipped factors), by dense/MoE and precision",
        *summarise(fitted, lambda r: f"{kind(r)} {precision(r)}"),
        *summarise(fitted, kind)[2:],
        "",
        "### Fitted factors (all rows)",
        "| accelerator | stack | efficiency | rows |",
        "|---|---|---:|---:|",
        *[f"| {f.accelerator} | {f.stack} | {f.efficiency:.3f} | {len(f.rows)} |" for f in factors],
        "",
        "### Rows not predictable (missing or unresolvable fields)",
        *[f"- `{rid}`: {', '.join(reasons)}" for rid, reasons in skipped],
        "",
        "### Held-out rows, worst 10",
        "| id | metric | predicted | measured | abs. error % | factor from |",
        "|---|---|---:|---:|---:|---|",
        *[
            f"| {r.case.id} | {r.prediction.metric} | {r.prediction.predicted:.4g} "
            f"| {r.prediction.measured:.4g} | {r.abs_pct_error:.1f} | {r.factor_source} |"
            for r in sorted(held_out, key=lambda r: -r.abs_pct_error)[:10]
        ],
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=Path, default=None)
    parser.add_argument("--fit", action="store_true", help="rewrite suanli/calibration/perf_fitted.yaml")
    args = parser.parse_args()
    sys.stdout.write(report(args.runs or dataset_path(DEFAULT_RUNS), args.fit))


if __name__ == "__main__":
    main()
