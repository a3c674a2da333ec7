"""The runtime on one real accelerator: a 1-8B Llama-style model trained for a few hundred steps in
the planner's best layout for one device, measured beside the planner's prediction.

    .venv/bin/python benchmarks/gpu_check.py [--model llama3.2-1b] [--steps 200] [--json]
    .venv/bin/python benchmarks/gpu_check.py --model tiny-llama-test --steps 8 --seq-len 64   # CPU dry run

Reports: median step time and MFU measured vs the planner's estimate (`suanli.perf`, the calibrated
factor of the accelerator's software stack); the checkpoint cost per save (the runtime stages the
state with device-to-host copies, overlapped with the next step, and times what training lost);
peak device memory vs the planner's memory model. The accelerator is found in the catalog from the
device's name (or given with --accelerator); on a machine without one it is the measured CPU core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from suanli.runtime.config import TrainConfig
from suanli.runtime.devices import detect_backend
from suanli.runtime.metrics import read_records
from suanli.runtime.parallel.planning import CPU_ACCELERATOR, auto_plan
from suanli.runtime.train import ProcessEnv, run
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SpecError

LLAMA_32_1B = {  # meta-llama/Llama-3.2-1B config.json (rope theta aside: the runtime uses 10 000)
    "slug": "llama3.2-1b",
    "name": "Llama 3.2 1B",
    "n_layers": 16,
    "hidden": 2048,
    "n_heads": 32,
    "n_kv_heads": 8,
    "ffn_hidden": 8192,
    "vocab": 128256,
    "max_seq_len": 8192,
    "tied_embeddings": True,
    "source": "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
}
GB = 1e9


def this_accelerator(requested: str | None) -> str:
    """The catalog slug of the device here: asked for, matched by name, or the measured CPU core."""
    if requested:
        return CATALOG.accelerator(requested, field="--accelerator").slug
    backend = detect_backend()
    if backend.device_type == "cpu":
        return CPU_ACCELERATOR
    name = torch.cuda.get_device_name(0) if backend.device_type == "cuda" else backend.device_type
    memory_gb = (
        torch.accelerator.get_memory_info(0)[1] / GB if hasattr(torch.accelerator, "get_memory_info") else 0
    )
    words = {w.lower() for w in name.replace("-", " ").split()} - {"nvidia", "amd", "tesla"}
    candidates = [
        a
        for a in CATALOG.accelerators
        if a.family == backend.family and words <= set(a.name.lower().replace("-", " ").split())
    ]
    if not candidates:
        raise SpecError(f"device {name!r} matches no catalog accelerator; pass --accelerator SLUG")
    return min(candidates, key=lambda a: abs((a.memory_gb or 0) - memory_gb)).slug


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="llama3.2-1b", help="llama3.2-1b or a catalog slug")
    parser.add_argument("--accelerator", default=None, help="catalog slug; default: from the device name")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    accelerator = this_accelerator(args.accelerator)
    model: Any = LLAMA_32_1B if args.model == LLAMA_32_1B["slug"] else args.model
    precision = "fp32" if accelerator == CPU_ACCELERATOR else "bf16"
    with tempfile.TemporaryDirectory() as folder:
        base = {
            "model": model,
            "accelerator": accelerator,
            "seq_len": args.seq_len,
            "global_batch_size": args.global_batch,
            "steps": args.steps,
            "precision": precision,
            "optimizer": {"lr": 3.0e-4, "warmup_steps": max(1, args.steps // 10)},
            "checkpoint": {"folder": str(Path(folder) / "ckpt"), "every_steps": max(2, args.steps // 4)},
            "metrics": {"path": str(Path(folder) / "metrics.jsonl")},
        }
        plan = auto_plan(TrainConfig.model_validate(base), 1)
        config = TrainConfig.model_validate(base | {"plan": plan})
        if torch.accelerator.is_available():
            torch.accelerator.reset_peak_memory_stats()
        run(config, env=ProcessEnv())
        peak_gb = torch.accelerator.max_memory_allocated() / GB if torch.accelerator.is_available() else None
        records = read_records(config.metrics.path)
    end = next(r for r in records if r["event"] == "end")
    saves = [r for r in records if r["event"] == "step" and r.get("checkpoint_saved")]
    costs = next((r for r in records if r["event"] == "checkpoint_costs"), {})
    estimate = plan.estimate
    assert estimate is not None
    report = {
        "accelerator": accelerator,
        "model": config.resolved_model().slug,
        "layout": plan.layout.short(),
        "steps": args.steps,
        "seq_len": args.seq_len,
        "global_batch": args.global_batch,
        "measured_step_s": end["median_step_time_s"],
        "predicted_step_s": estimate.step_time_s,
        "step_error_pct": 100
        * (estimate.step_time_s - end["median_step_time_s"])
        / end["median_step_time_s"],
        "measured_mfu": end["mfu"],
        "predicted_mfu": estimate.mfu,
        "peak_source": end["peak_source"],
        "checkpoint_saves": len(saves),
        "checkpoint_lost_per_save_s": costs.get("mean_time_lost_per_save_s"),
        "checkpoint_blocking_per_save_s": costs.get("mean_blocking_s"),
        "checkpoint_stall_median_s": statistics.median(r["checkpoint_stall_s"] for r in saves)
        if saves
        else None,
        "peak_memory_gb": peak_gb,
        "predicted_memory_gb": estimate.memory_gb_per_gpu,
        "predicted_memory_breakdown_gb": estimate.memory_breakdown_gb,
        "final_loss": end["final_loss"],
    }
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
