"""`benchmarks/comm_model_accuracy.py --json`: the interface an independent evaluation calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "comm_model_accuracy.py"
# Measured rows the model misses by more than 15 % after the fixes of issue 14, each with its figure
# and reason in benchmarks/results/comm.md. Strict: the test fails when one is fixed (move it into
# the bar) or when any other row misses.
KNOWN_MISSES = {
    "nccl1221-h100-4node-roce-allreduce",  # 4x8 H100 over 8x 400G RoCE: 320 measured, 387 modelled
    "aws-p5-32node-alltoall",  # 32x AWS p5 all-to-all over EFA: 40.8 measured, 48.0 modelled
}


def test_accuracy_json_reports_the_bars_on_the_published_points() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--json"], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert {"max_busbw_error_pct", "median_busbw_error_pct", "latency_floor_ratio"} <= report.keys()
    assert report["busbw_points"] >= 10 and report["latency_points"] >= 2
    measured = {
        r["id"]: r["error_pct"] for r in report["rows"] if r["kind"] == "busbw" and not r["reported_apart"]
    }
    assert measured.keys() >= KNOWN_MISSES  # the known misses stay headline rows, not reported apart
    assert max(e for i, e in measured.items() if i not in KNOWN_MISSES) <= 15  # the bar
    assert set(report["over_15_pct"]) == KNOWN_MISSES  # strict: no new miss, no silent fix
    assert report["latency_floor_ratio"] <= 2  # nccl#1244 (2x8 H20, NVLSTree), DeepEP#303 (8x H20)
    assert {"all_reduce", "all_gather"} <= report["per_collective"].keys()
    assert len(report["per_fabric"]) >= 3
    apart = {row["id"]: row for row in report["reported_apart"]}
    # the corrected H200 NVL row: two NVLink-bridge islands joined by PCIe + UPI, an expected figure
    assert apart["blog-h200nvl-2node-roce"]["error_pct"] <= 15
    assert "nccl-2x-h100pcie-bridge" in apart and apart["nccl-2x-h100pcie-bridge"]["reported_apart"]


def test_accuracy_script_rejects_a_missing_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--csv", str(tmp_path / "none.csv")], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error:") and "file not found" in result.stderr
