"""`suanli ft plan` (checkpoint interval, expected ETTR) and `suanli ft predict` (failure predictor)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.ft.interval import (
    HOUR_S,
    best_ettr,
    daly_interval_s,
    expected_ettr,
    job_mtbf_s,
    max_restart_s_for_ettr,
    max_stall_s_for_ettr,
    optimal_interval_s,
    young_interval_s,
)

if TYPE_CHECKING:  # the predictor pulls in lifelines and pandas: imported only when used
    from suanli.ft.predictor import AlarmQuality

ft_app = typer.Typer(
    help="Fault tolerance: checkpoint interval planning and failure prediction.", no_args_is_help=True
)
app.add_typer(ft_app, name="ft")


def _seconds(value: float | None) -> str:
    if value is None:
        return "unreachable"
    return f"{value:,.1f} s" if value < 600 else f"{value / 60:,.1f} min"


@ft_app.command("plan")
def plan(
    gpus: int = typer.Option(..., "--gpus", help="GPUs the job spans"),
    mtbf_per_gpu_h: float | None = typer.Option(
        None, "--mtbf-per-gpu-h", help="mean hours between failures of one GPU"
    ),
    failures_per_1k_gpu_month: float | None = typer.Option(
        None, "--failures-per-1k-gpu-month", help="Llama 3's unit: 14.2 on 16,384 H100 (30-day months)"
    ),
    stall_s: float = typer.Option(..., "--stall-s", help="seconds training is blocked per checkpoint"),
    restart_s: float = typer.Option(
        ..., "--restart-s", help="seconds from a failure until training runs again"
    ),
    recall: float = typer.Option(0.0, help="failure predictor recall, in [0, 1)"),
    precision: float = typer.Option(1.0, help="failure predictor precision, in (0, 1]"),
    proactive_stall_s: float | None = typer.Option(
        None, "--proactive-stall-s", help="stall of a proactive checkpoint (default: --stall-s)"
    ),
    target_ettr: float = typer.Option(0.99, "--target-ettr", help="ETTR goal for the what-it-takes lines"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Checkpoint interval (Young, Daly, Aupy et al.) and expected effective training time ratio.

    Example: suanli ft plan --gpus 16384 --failures-per-1k-gpu-month 14.2 --stall-s 5 --restart-s 120
    """
    mtbf_s = job_mtbf_s(gpus, mtbf_per_gpu_h, failures_per_1k_gpu_month)
    interval_s = optimal_interval_s(stall_s, mtbf_s, recall, precision)
    ettr = expected_ettr(interval_s, stall_s, mtbf_s, restart_s, recall, precision, proactive_stall_s)
    result = {
        "gpus": gpus,
        "job_mtbf_h": mtbf_s / HOUR_S,
        "failures_per_day": 24 * HOUR_S / mtbf_s,
        "young_interval_s": young_interval_s(stall_s, mtbf_s),
        "daly_interval_s": daly_interval_s(stall_s, mtbf_s),
        "interval_s": interval_s,
        "expected_ettr": ettr,
        "expected_ettr_without_predictor": best_ettr(stall_s, mtbf_s, restart_s),
        "target_ettr": target_ettr,
        "max_restart_s_for_target": max_restart_s_for_ettr(
            target_ettr, stall_s, mtbf_s, recall, precision, proactive_stall_s
        ),
        "max_stall_s_for_target": max_stall_s_for_ettr(
            target_ettr, restart_s, mtbf_s, recall, precision, proactive_stall_s
        ),
    }
    if as_json:
        print_json(result)
        return
    rows = [
        ["job MTBF", f"{result['job_mtbf_h']:,.2f} h ({result['failures_per_day']:,.1f} failures/day)"],
        ["Young interval", _seconds(result["young_interval_s"])],
        ["Daly interval", _seconds(result["daly_interval_s"])],
        [
            "checkpoint every",
            _seconds(interval_s) + (" (Aupy et al., with predictor)" if recall else " (Daly)"),
        ],
        ["expected ETTR", f"{ettr:.2%}"],
    ]
    if recall:
        rows.append(["ETTR without predictor", f"{result['expected_ettr_without_predictor']:.2%}"])
    rows += [
        [
            f"max restart for {target_ettr:.0%}",
            _seconds(result["max_restart_s_for_target"]) + f" at {stall_s:g} s stall",
        ],
        [
            f"max stall for {target_ettr:.0%}",
            _seconds(result["max_stall_s_for_target"]) + f" at {restart_s:g} s restart",
        ],
    ]
    console.print(table("Checkpoint plan", ["quantity", "value"], rows))


predict_app = typer.Typer(
    help="Train and evaluate the failure predictor with a time-based split.", no_args_is_help=True
)
ft_app.add_typer(predict_app, name="predict")


def _alarm_rows(name: str, alarms: AlarmQuality) -> list[list[str]]:
    return [
        [f"{name} precision", f"{alarms.precision:.3f} ({alarms.true_alarms} of {alarms.alarms} alarms)"],
        [f"{name} recall", f"{alarms.recall:.3f} ({alarms.true_alarms} of {alarms.failures} failures)"],
    ]


@predict_app.command("titan")
def predict_titan(
    train_landmark: str = typer.Option("2016-01-01", help="fit on GPUs in service at this date"),
    test_landmark: str = typer.Option("2017-01-01", help="evaluate on GPUs in service at this later date"),
    horizon_days: float = typer.Option(365.0, help="follow each GPU this long after its landmark"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Survival (Cox) model of ORNL Titan GPU lifetimes; reports concordance on the later landmark.

    Example: suanli ft predict titan --json
    """
    from suanli.ft.predictor import evaluate_titan

    report = evaluate_titan(train_landmark, test_landmark, horizon_days)
    if as_json:
        print_json(asdict(report) | {"alarms_top5pct_30d": _alarm_json(report.alarms_top5pct_30d)})
        return
    rows = [
        ["GPUs (train / test)", f"{report.train_gpus:,} / {report.test_gpus:,}"],
        ["failures in test window", f"{report.test_failures:,}"],
        ["concordance, train", f"{report.concordance_train:.3f}"],
        ["concordance, test", f"{report.concordance_test:.3f}"],
        [
            "  age only / location only",
            f"{report.concordance_test_age_only:.3f} / {report.concordance_test_location_only:.3f}",
        ],
        *_alarm_rows("top 5 %, 30 days:", report.alarms_top5pct_30d),
    ]
    console.print(
        table(f"Titan GPU survival ({train_landmark} -> {test_landmark})", ["quantity", "value"], rows)
    )


@predict_app.command("bgl")
def predict_bgl(
    threshold: float = typer.Option(0.5, help="alarm when the alert probability reaches this"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Log alert detector on the Loghub BGL sample: earliest 70 % of lines train, the rest test.

    Example: suanli ft predict bgl
    """
    from suanli.ft.predictor import evaluate_bgl

    report = evaluate_bgl(threshold=threshold)
    if as_json:
        print_json(
            asdict(report)
            | {
                "detector": _alarm_json(report.detector),
                "fatal_level_baseline": _alarm_json(report.fatal_level_baseline),
            }
        )
        return
    rows = [
        ["lines (train / test)", f"{report.train_lines} / {report.test_lines}"],
        *_alarm_rows("detector", report.detector),
        *_alarm_rows("FATAL-level rule", report.fatal_level_baseline),
        ["alert kinds unseen in training", ", ".join(report.unseen_test_categories) or "none"],
        [
            "missed alerts by kind",
            ", ".join(f"{k} {v}" for k, v in report.missed_by_category.items()) or "none",
        ],
    ]
    console.print(table("BGL log alert detector", ["quantity", "value"], rows))


@predict_app.command("telemetry")
def predict_telemetry(
    samples: Path = typer.Option(
        ..., "--samples", help="GPU telemetry (.csv, .json, .jsonl; DCGM field names work)"
    ),
    failures: Path = typer.Option(..., "--failures", help="failure records: time, node, [gpu], [cause]"),
    horizon_h: float = typer.Option(24.0, "--horizon-h", help="predict failures this many hours ahead"),
    threshold: float = typer.Option(0.5, help="alarm when the failure probability reaches this"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Train on your own telemetry (earliest 70 % of time), report alarms on the rest.

    Example: suanli ft predict telemetry --samples dcgm.csv --failures failures.csv --horizon-h 12
    """
    from suanli.ft.predictor import evaluate_telemetry
    from suanli.ft.telemetry import load_failures, load_samples

    _, report = evaluate_telemetry(
        load_samples(samples), load_failures(failures), horizon_h * HOUR_S, threshold=threshold
    )
    # A measured recall of 1 is a small-sample artefact, and the planner needs precision > 0.
    plan_recall, plan_precision = min(report.alarms.recall, 0.99), max(report.alarms.precision, 0.001)
    result = asdict(report) | {
        "alarms": _alarm_json(report.alarms),
        "plan_recall": plan_recall,
        "plan_precision": plan_precision,
    }
    if as_json:
        print_json(result)
        return
    rows = [
        ["samples (train / test)", f"{report.train_samples:,} / {report.test_samples:,}"],
        ["test samples before a failure", f"{report.test_failing_samples:,}"],
        *_alarm_rows("alarms", report.alarms),
        ["for ft plan", f"--recall {plan_recall:.3f} --precision {plan_precision:.3f}"],
    ]
    console.print(table(f"Telemetry predictor ({horizon_h:g} h ahead)", ["quantity", "value"], rows))


def _alarm_json(alarms: AlarmQuality) -> dict[str, float | int]:
    return asdict(alarms) | {"precision": alarms.precision, "recall": alarms.recall}
