"""`benchmarks/comm_model_accuracy.py --json`: the interface an independent evaluation calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "comm_model_accuracy.py"


def test_accuracy_json_reports_the_bars_on_the_published_points() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--json"], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert {"max_busbw_error_pct", "median_busbw_error_pct", "latency_floor_ratio"} <= report.keys()
    assert report["busbw_points"] >= 10 and report["latency_points"] >= 1
    assert report["median_busbw_error_pct"] <= 15  # collective_bandwidth.csv, nccl-tests points
    assert report["latency_floor_ratio"] <= 2  # nccl#1244: 46-48 µs on 2x8 H20


def test_accuracy_script_rejects_a_missing_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--csv", str(tmp_path / "none.csv")], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error:") and "file not found" in result.stderr
