"""Runtime on CPU: tokens/s, MFU against the measured CPU peak, and goodput with a killed rank.

    .venv/bin/python benchmarks/runtime_cpu.py [--steps 30]

Each case runs `suanli.runtime` under torchrun (gloo) on this machine and reads its metrics file;
the last case kills rank 1 during step 12 and lets torchrun restart the job from the memory tier.
Prints a markdown table (copy it into benchmarks/results/runtime.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from suanli.runtime.metrics import goodput, read_records
from suanli.runtime.train import launch

CASES = [  # name, processes, zero stage, injected failure step
    ("1 process", 1, 0, None),
    ("DDP x2", 2, 0, None),
    ("FSDP2 x2", 2, 3, None),
    ("FSDP2 x4", 4, 3, None),
    ("FSDP2 x2, rank killed at step 12", 2, 3, 12),
]


def config(folder: Path, processes: int, zero_stage: int, steps: int) -> Path:
    path = folder / "config.yaml"
    data = {
        "model": "tiny-llama-test",
        "seq_len": 64,
        "global_batch_size": 8,
        "steps": steps,
        "precision": "fp32",
        "layout": {"dp": processes, "zero_stage": zero_stage, "micro_batch": 8 // processes},
        "optimizer": {"lr": 1.0e-2, "warmup_steps": 3},
        "checkpoint": {"folder": "checkpoints", "every_steps": 5},
        "metrics": {"path": "metrics.jsonl"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for name, processes, zero_stage, failure in CASES:
        with tempfile.TemporaryDirectory() as folder:
            path = config(Path(folder), processes, zero_stage, args.steps)
            start = time.perf_counter()
            code = launch(path, processes, inject_failure_at_step=failure, max_restarts=1)
            elapsed = time.perf_counter() - start
            records = read_records(Path(folder) / "metrics.jsonl")
        end = next(r for r in records if r["event"] == "end")
        steps = [r for r in records if r["event"] == "step"]
        summary = goodput(records)
        badput = ", ".join(f"{k} {v:.2f}" for k, v in summary.badput_s.items() if v >= 0.005)
        rows.append(
            f"| {name} | {code} | {steps[0]['loss']:.2f} → {end['final_loss']:.2f} | "
            f"{end['median_step_time_s'] * 1e3:.1f} | {end['tokens_per_s']:,.0f} | "
            f"{end['peak_tflops_per_device'] * 1e3:.1f} | {end['mfu']:.1%} | {summary.goodput:.1%} | "
            f"{summary.wall_s:.1f} | {badput} | {elapsed:.1f} |"
        )
    print(
        "| case | exit | loss | median step ms | tokens/s | measured peak GFLOPS/proc | MFU | goodput "
        "| run wall s | badput s by cause | launch-to-exit s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
