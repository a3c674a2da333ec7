"""N-D parallelism on this machine: every layout against one process, the planner against the
measured step time, and mixed-speed data parallelism against an even split.

    .venv/bin/python benchmarks/runtime_parallel.py --quick --json

1. Numerics: each layout trains the same model on the same tokens as one process (gloo, one core per
   process); the worst relative loss difference over all steps is reported.
2. Planner: the efficiency factor of `suanli.perf` for this CPU is fitted on the one-process run of
   the dense model only; every parallel layout's step time is then predicted with it (left out of
   the fit) and compared with the median measured step time. Layouts with more processes than cores
   share cores, which the model does not know; they are listed, and reported apart.
3. Mixed speed: rank 1 is emulated 2× slower (it sleeps as long again as it computed). The planner
   (`suanli.plan.hetero.data_parallel_mix`) splits the batch over a fast and a half-speed device;
   that plan is run through `--plan` and timed against the even split on the same emulated speeds
   (the two alternate, twice, and the best median step time of each is compared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suanli.plan.hetero import data_parallel_mix
from suanli.plan.search import best_plan_on_pool, job_shape
from suanli.runtime.config import TrainConfig, load_config
from suanli.runtime.metrics import read_records
from suanli.runtime.parallel.planning import (
    POOL,
    STACK,
    fit_efficiency,
    predicted_step_s,
    this_node,
)
from suanli.runtime.train import launch
from suanli.spec.catalog import CATALOG
from suanli.spec.job import JobSpec, Parallelism, Training

DENSE = {  # tiny-llama-test with 5 layers, so pipelines split unevenly (3+2, 1+1+2+1)
    "slug": "tiny-llama-5l",
    "name": "tiny Llama, 5 layers",
    "n_layers": 5,
    "hidden": 64,
    "n_heads": 4,
    "n_kv_heads": 2,
    "ffn_hidden": 176,
    "vocab": 256,
    "max_seq_len": 128,
}
MOE = DENSE | {
    "slug": "tiny-moe",
    "name": "tiny Llama-style MoE",
    "n_layers": 2,
    "moe": {"experts": 4, "top_k": 2, "expert_ffn_hidden": 64},
}
SLOWDOWN = 2.0
HETERO_REPEATS = 2


@dataclass(frozen=True)
class Case:
    name: str
    model: dict[str, Any]
    layout: dict[str, Any]
    quick: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("TP2 (sequence parallel)", DENSE, {"tp": 2}),
    Case("PP2 1F1B (3+2 layers)", DENSE, {"pp": 2}),
    Case("PP2 interleaved v2 (1+1+2+1 layers)", DENSE, {"pp": 2, "vpp": 2, "schedule": "Interleaved1F1B"}),
    Case("TP2 x PP2", DENSE, {"tp": 2, "pp": 2}),
    Case("FSDP2 x TP2", DENSE, {"dp": 2, "tp": 2, "zero_stage": 3}),
    Case("CP2 (ring attention)", DENSE, {"cp": 2}),
    Case("EP2 (MoE, all-to-all)", MOE, {"dp": 2, "ep": 2}),
    Case("FSDP2 x CP2", DENSE, {"dp": 2, "cp": 2, "zero_stage": 3}, quick=False),
    Case(
        "HSDP 2 x 2", DENSE, {"dp": 4, "zero_stage": 3}, quick=False, extra={"parallel": {"dp_replicate": 2}}
    ),
    Case("DDP2 + EP2 (MoE)", MOE, {"dp": 2, "ep": 2}, quick=False),
]


def write_config(folder: Path, name: str, model: dict[str, Any], steps: int, **overrides: Any) -> Path:
    data = {
        "model": model,
        "seq_len": 64,
        "global_batch_size": 8,
        "steps": steps,
        "precision": "fp32",
        "optimizer": {"lr": 1.0e-2, "warmup_steps": 3},
        "metrics": {"path": f"{name}.jsonl"},
    } | overrides
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(path: Path, processes: int) -> tuple[list[float], float]:
    """Launch, then (losses per step, median step time after the first)."""
    if launch(path, processes, max_restarts=0) != 0:
        raise SystemExit(f"{path.name}: the run failed")
    records = read_records(load_config(path).metrics.path)
    losses = [r["loss"] for r in records if r["event"] == "step"]
    end = next(r for r in records if r["event"] == "end")
    return losses, end["median_step_time_s"]


def relative_difference(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


def hetero_plan_file(folder: Path, config: TrainConfig) -> Path:
    """The planner's mixed-speed plan for one fast and one half-speed device of this machine."""
    cpu = CATALOG.accelerator("cpu-1core")
    slow = cpu.model_copy(
        update={
            "slug": "cpu-1core-half-speed",
            "name": "cpu-1core emulated at half speed",
            "aliases": [],
            "peak_tflops": cpu.peak_tflops.model_copy(
                update={k: v / SLOWDOWN for k, v in cpu.peak_tflops.model_dump().items() if v}
            ),
            "memory_bw_gb_s": (cpu.memory_bw_gb_s or 1) / SLOWDOWN,
        }
    )
    cluster = this_node(cpu, 1, extra=[slow])
    job = JobSpec(
        name="hetero",
        model=config.resolved_model(),
        training=Training(
            seq_len=config.seq_len, global_batch_size=config.global_batch_size, precision="fp32"
        ),
        parallelism=Parallelism(microbatch_size=2, tensor_parallel_degree=1, pipeline_parallel_degree=1),
    )
    members = [best_plan_on_pool(job, cluster, pool, 1, stack=STACK) for pool in (POOL, f"{POOL}-1")]
    assert all(members), "the planner found no single-device plan"
    plan = data_parallel_mix(job_shape(job), cluster, members, STACK)  # type: ignore[arg-type]
    assert plan is not None, "the planner found no mixed-speed split"
    path = folder / "hetero-plan.json"
    path.write_text(plan.model_dump_json())
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the done-when set, 20 steps (~3 min quiet)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    args = parser.parse_args()
    steps = 20 if args.quick else 40
    os.environ["OMP_NUM_THREADS"] = "1"  # one core per process, the single-process reference too
    cores = os.cpu_count() or 1
    cases = [c for c in CASES if c.quick or not args.quick]
    rows, summary_layouts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        references: dict[str, tuple[list[float], float]] = {}
        for model in (DENSE, MOE):
            path = write_config(folder, f"single-{model['slug']}", model, steps, layout={"micro_batch": 2})
            references[str(model["slug"])] = run(path, 1)
        dense_config = load_config(write_config(folder, "fit", DENSE, steps, layout={"micro_batch": 2}))
        spec = dense_config.resolved_model()
        efficiency = fit_efficiency(
            spec, dense_config, dense_config.resolved_layout(1), references[str(DENSE["slug"])][1]
        )
        errors, errors_on_cores, worst = [], [], 0.0
        for index, case in enumerate(cases):
            layout = {"micro_batch": 2, "zero_stage": 0} | case.layout
            path = write_config(folder, f"case{index}", case.model, steps, layout=layout, **case.extra)
            config = load_config(path)
            processes = config.resolved_layout().world_size
            losses, measured_s = run(path, processes)
            reference_losses, _ = references[str(case.model["slug"])]
            difference = relative_difference(losses, reference_losses)
            worst = max(worst, difference)
            case_spec = config.resolved_model()
            predicted_s = predicted_step_s(case_spec, config, config.resolved_layout(), efficiency)
            error = 100 * (predicted_s - measured_s) / measured_s
            errors.append(abs(error))
            if processes <= cores:
                errors_on_cores.append(abs(error))
            summary_layouts.append(case.name)
            rows.append(
                f"| {case.name} | {processes}{'*' if processes > cores else ''} | {difference:.1e} | "
                f"{measured_s * 1e3:.0f} | {predicted_s * 1e3:.0f} | {error:+.0f}% |"
            )
        hetero_config = write_config(
            folder,
            "hetero-base",
            DENSE,
            steps,
            global_batch_size=24,
            layout={"dp": 2, "micro_batch": 2},
            parallel={"emulated_slowdown": [1.0, SLOWDOWN]},
        )
        plan_path = hetero_plan_file(folder, load_config(hetero_config))
        even = write_config(
            folder,
            "hetero-even",
            DENSE,
            steps,
            global_batch_size=24,
            layout={"dp": 2, "micro_batch": 2, "zero_stage": 0},
            parallel={"emulated_slowdown": [1.0, SLOWDOWN]},
        )
        planned = write_config(
            folder,
            "hetero-planned",
            DENSE,
            steps,
            global_batch_size=24,
            plan=str(plan_path),
            parallel={"emulated_slowdown": [1.0, SLOWDOWN]},
        )
        shares = load_config(planned).resolved_batch_shares(2)
        # alternate the two so that load drifting on a shared machine hits both; best of each
        timings: dict[Path, list[float]] = {even: [], planned: []}
        trained: dict[Path, list[float]] = {}
        for _ in range(HETERO_REPEATS):
            for path in (even, planned):
                trained[path], step_s = run(path, 2)
                timings[path].append(step_s)
        even_s, planned_s = min(timings[even]), min(timings[planned])
        hetero_difference = relative_difference(trained[planned], trained[even])
    load = os.getloadavg()[0]
    summary = {
        "layouts": summary_layouts,
        "max_loss_rel_diff": worst,
        "predicted_vs_measured_median_err_pct": statistics.median(errors),
        "predicted_vs_measured_median_err_pct_within_cores": statistics.median(errors_on_cores)
        if errors_on_cores
        else None,
        "fitted_cpu_efficiency": efficiency,
        "hetero_split_speedup": even_s / planned_s,
        "hetero_planned_shares": shares,
        "hetero_even_step_s": timings[even],
        "hetero_planned_step_s": timings[planned],
        "hetero_loss_rel_diff_vs_even": hetero_difference,
        "steps": steps,
        "load_average_1min": load,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{steps} steps, seq 64, batch 8, micro-batch 2, fp32; load average {load:.1f} on {cores} cores")
    print(
        "| layout | processes | max rel. loss diff vs 1 process | measured ms/step | predicted ms | error |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"(* more processes than cores; fitted efficiency {efficiency:.3f} from the 1-process run)")
    print(
        f"mixed speed (rank 1 {SLOWDOWN:g}x slower), batch 24: even 12/12 {even_s * 1e3:.0f} ms, planner "
        f"{shares} {planned_s * 1e3:.0f} ms: {even_s / planned_s:.2f}x; loss diff {hetero_difference:.1e}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
