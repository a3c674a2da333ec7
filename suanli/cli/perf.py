"""`suanli perf predict [RUNS.csv]`: predict published training runs with the performance model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.perf.runs import parse_row, predict_case, read_runs, row_problems
from suanli.spec.datasets import dataset_path
from suanli.spec.errors import SuanliError, one_line

PUBLISHED_RUNS = "training_runs/training_runs.csv"  # under datasets/

perf_app = typer.Typer(help="The performance model: predict training runs.", no_args_is_help=True)
app.add_typer(perf_app, name="perf")


@perf_app.command("predict")
def predict(
    runs: Path = typer.Argument(
        None, help=f"a runs CSV with the columns of datasets/{PUBLISHED_RUNS} (default: that file)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON (one object per row)"),
) -> None:
    """Predict every row whose model shape and layout are complete; list the others with the
    fields they lack. Each prediction follows its row's definition (see `basis`).

    Example: suanli perf predict --json
    """
    predicted: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for number, row in enumerate(read_runs(runs or dataset_path(PUBLISHED_RUNS)), start=2):
        row_id = {"row": number, "id": row.get("id") or "no id"}
        case = row_problems(row) or parse_row(row)
        if isinstance(case, list):
            skipped.append({**row_id, "missing": case})
            continue
        try:
            prediction = predict_case(case)
        except (SuanliError, ValueError, ArithmeticError) as exc:
            skipped.append({**row_id, "missing": [f"prediction ({one_line(str(exc))})"]})
            continue
        result = prediction.as_dict()
        result["assumptions"] = case.assumptions
        predicted.append(result)
    if as_json:
        print_json({"predictions": predicted, "not_predicted": skipped})
        return
    rows = [
        [
            p["id"],
            f"{p['mfu'] * 100:.1f}",
            f"{p['step_time_s']:.3f}",
            f"{p['tokens_per_s_per_gpu']:,.0f}",
            f"{p['tflops_per_gpu']:.0f}",
            f"{p['memory_gb_per_gpu']:.1f}",
            "yes" if p["fits"] else "NO",
            f"{p['metric']}: {p['predicted']:.4g} vs {p['measured']:.4g}" if p["measured"] else p["metric"],
        ]
        for p in predicted
    ]
    console.print(
        table(
            f"Predictions for {runs.name}",
            ["id", "MFU %", "Step s", "tok/s/GPU", "TFLOP/s", "GB/GPU", "fits", "predicted vs measured"],
            rows,
        )
    )
    for item in skipped:
        console.print(f"not predicted: row {item['row']} ({item['id']}): {', '.join(item['missing'])}")
