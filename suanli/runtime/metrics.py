"""What a run measures: tokens/s, MFU and HFU, and goodput with badput by cause, as JSON lines.

MFU (model FLOPs utilisation, Chowdhery et al. 2022, PaLM appendix B) counts only the FLOPs the
model needs; HFU also counts recomputed activations. Both use the planner's FLOP formulas
(`suanli.perf.flops`) so predicted and measured utilisation mean the same thing.

Goodput (Google Cloud's ML goodput, and Llama 3's "effective training time") is the share of wall
time spent on steps whose work survives; the rest is badput, split by cause.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from suanli.perf.flops import hardware_flops_per_token, model_flops_per_token
from suanli.spec.base import Spec
from suanli.spec.model import ModelSpec

BADPUT_CAUSES = ("startup", "checkpoint_stall", "data_wait", "restart", "lost_work")


def measure_matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype, size: int = 1024, min_time_s: float = 0.2
) -> float:
    """Best sustained rate of a square matmul on `device`, in TFLOPS (2 n^3 FLOPs a product).

    Stands in for the datasheet peak where there is none (a CPU): a training step can approach but
    not beat the rate of its largest matmul, so MFU against this peak stays below 1.
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)  # warm-up: thread pools, kernels
    best_s, spent_s = float("inf"), 0.0
    while spent_s < min_time_s:
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type != "cpu":
            torch.accelerator.synchronize(device)
        elapsed = time.perf_counter() - start
        best_s, spent_s = min(best_s, elapsed), spent_s + elapsed
    return 2 * size**3 / best_s / 1e12


def utilisation(flops_per_token: float, tokens_per_s: float, peak_tflops_total: float) -> float:
    """Achieved FLOP rate over the peak of all devices of the job."""
    return flops_per_token * tokens_per_s / (peak_tflops_total * 1e12)


def mfu(model: ModelSpec, seq_len: int, tokens_per_s: float, peak_tflops_total: float) -> float:
    return utilisation(model_flops_per_token(model, seq_len), tokens_per_s, peak_tflops_total)


def hfu(
    model: ModelSpec, seq_len: int, recompute: str, tokens_per_s: float, peak_tflops_total: float
) -> float:
    flops = hardware_flops_per_token(model, seq_len, recompute)
    return utilisation(flops, tokens_per_s, peak_tflops_total)


class MetricsLog:
    """Appends one JSON object a line; every record carries `event`, `time` (unix s) and `attempt`."""

    def __init__(self, path: str | Path, attempt: int, enabled: bool = True) -> None:
        self.path, self.attempt, self.enabled = Path(path), attempt, enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        """Start the file afresh (a new run, not a restart of this one)."""
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def write(self, event: str, at: float | None = None, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": at or time.time(), "attempt": self.attempt, **fields}
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        return record


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file (for the service and the CLI); a torn last line is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Goodput(Spec):
    wall_s: float = Field(ge=0)
    productive_s: float = Field(ge=0)
    goodput: float = Field(ge=0, le=1, description="productive_s / wall_s")
    badput_s: dict[str, float] = Field(description="by cause: " + ", ".join(BADPUT_CAUSES))
    restarts: int = Field(ge=0)


def _segments(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The records of each process start (a torchrun restart or a new launch), in file order."""
    segments: list[list[dict[str, Any]]] = []
    for record in records:
        if record["event"] == "start" or not segments:
            segments.append([])
        segments[-1].append(record)
    return segments


def goodput(records: list[dict[str, Any]]) -> Goodput:
    """Split the wall time of a run (all its attempts and launches) into productive time and badput.

    - startup: from the first start to the first step (process group, model, peak probe);
    - restart: from the last record before a resumed start until its state is restored;
    - lost_work: compute of steps that a later resume rolled back (they were done twice);
    - checkpoint_stall / data_wait: time the loop was blocked saving state / waiting for batches.
    """
    badput = dict.fromkeys(BADPUT_CAUSES, 0.0)
    if not records:
        return Goodput(wall_s=0, productive_s=0, goodput=0, badput_s=badput, restarts=0)
    segments = _segments(records)
    steps = [[r for r in segment if r["event"] == "step"] for segment in segments]
    lost: set[tuple[int, int]] = set()  # (segment, step)
    restarts = 0
    for index, segment in enumerate(segments):
        resume = next((r for r in segment if r["event"] == "resume"), None)
        if resume is None or index == 0:
            continue
        restarts += 1
        badput["restart"] += resume["time"] - segments[index - 1][-1]["time"]
        restored = resume["restored_step"] or 0
        lost |= {
            (earlier, s["step"]) for earlier in range(index) for s in steps[earlier] if s["step"] > restored
        }
    productive = 0.0
    for index, segment_steps in enumerate(steps):
        for step in segment_steps:
            badput["checkpoint_stall"] += step["checkpoint_stall_s"]
            badput["data_wait"] += step["data_wait_s"]
            if (index, step["step"]) in lost:
                badput["lost_work"] += step["compute_s"]
            else:
                productive += step["compute_s"]
    first_step = next((s for segment_steps in steps for s in segment_steps), None)
    if first_step is not None:
        badput["startup"] = first_step["time"] - first_step["step_time_s"] - records[0]["time"]
    wall = max(r["time"] for r in records) - records[0]["time"]
    return Goodput(
        wall_s=wall,
        productive_s=productive,
        goodput=min(1.0, productive / wall) if wall > 0 else 0.0,
        badput_s={cause: max(0.0, seconds) for cause, seconds in badput.items()},
        restarts=restarts,
    )


def step_time_comparison(predicted_s: float | None, measured_s: float) -> str:
    """One line: the planner's step time next to the measured one."""
    if predicted_s is None:
        return f"step time: measured {measured_s:.4g} s (no planner prediction in the config)"
    error = (measured_s - predicted_s) / predicted_s
    return f"step time: predicted {predicted_s:.4g} s (planner), measured {measured_s:.4g} s ({error:+.0%})"
