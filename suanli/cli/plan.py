"""`suanli plan JOB.yaml --cluster CLUSTER.yaml`: rank the feasible layouts for a training job."""

from __future__ import annotations

from pathlib import Path

import typer

from suanli.cli import app
from suanli.cli.output import console, fmt, print_json, table
from suanli.plan.export import EMITTERS, emit
from suanli.plan.objective import OBJECTIVES, job_shape
from suanli.plan.search import search, summary
from suanli.spec import Cluster, JobSpec, load
from suanli.spec.errors import SpecError
from suanli.spec.plan import Plan


def _layout_text(plan: Plan) -> str:
    if any(s.kind == "data-parallel-group" for s in plan.stages):
        return " | ".join(
            f"{s.pool}: {s.layout.short() if s.layout else ''} b{s.global_batch}" for s in plan.stages
        )
    text = plan.layout.short()
    if plan.stages:
        text += " [" + " → ".join(f"{s.pool}:{s.layers}L" for s in plan.stages) + "]"
    return text


def _days(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 86400:,.1f}"


@app.command("plan")
def plan_job(
    job_file: Path = typer.Argument(..., help="a job YAML with a model and training settings"),
    cluster_file: Path = typer.Option(..., "--cluster", help="the cluster YAML to plan on"),
    objective: str = typer.Option("time", help=f"rank by: {', '.join(OBJECTIVES)}"),
    top: int = typer.Option(5, min=1, help="how many plans to show"),
    as_json: bool = typer.Option(False, "--json", help="print the plans as JSON"),
    emit_for: str = typer.Option(
        None, "--emit", help=f"print launch arguments of the best plan: {', '.join(EMITTERS)}"
    ),
    stack: str = typer.Option(
        "any",
        help="software stack whose calibration to use (any: the stack-agnostic median of the accelerator's)",
    ),
    mixed: bool = typer.Option(
        True, "--mixed/--single", help="also consider plans that mix accelerator types"
    ),
) -> None:
    """Search every feasible parallel layout on every pool the job may use and rank them.

    Example: suanli plan examples/jobs/llama3.1-70b-pretrain.yaml \\
      --cluster examples/clusters/mixed-center.yaml --objective cost --emit megatron
    """
    if objective not in OBJECTIVES:
        raise SpecError(f"--objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if emit_for is not None and emit_for not in EMITTERS:
        raise SpecError(f"--emit: expected one of {', '.join(EMITTERS)}, got {emit_for!r}")
    job = load(JobSpec, job_file)
    cluster = load(Cluster, cluster_file)
    plans = search(job, cluster, objective, top, stack=stack, heterogeneous=mixed)
    if emit_for:
        shape = job_shape(job)
        best = next((p for p in plans if not p.stages), None)
        if best is None:
            raise SpecError("--emit: no single-pool plan among the top plans; rerun with --single")
        typer.echo(
            emit(
                best, emit_for, shape.model, shape.work.seq_len, shape.work.global_batch, shape.work.precision
            )
        )
        return
    if as_json:
        print_json([p.model_dump(mode="json", exclude_none=True) for p in plans])
        return
    rows = []
    for rank, plan in enumerate(plans, 1):
        e = plan.estimate
        assert e is not None
        rows.append(
            [
                str(rank),
                plan.accelerator,
                fmt(plan.gpus),
                _layout_text(plan),
                fmt(e.step_time_s, 2),
                f"{e.mfu * 100:.1f}",
                fmt(e.memory_gb_per_gpu, 1),
                _days(plan.time_to_train_s),
                fmt(plan.gpu_hours),
                fmt(plan.cost),
            ]
        )
    console.print(
        table(
            f"Plans for {job.name} on {cluster.name} (by {objective})",
            ["#", "accelerator", "GPUs", "layout", "Step s", "MFU %", "GB/GPU", "Days", "GPU-h", "Cost"],
            rows,
            caption="Days/GPU-h/Cost for the job's token budget; cost from the cluster's price_per_gpu_hour",
        )
    )
    for rank, plan in enumerate(plans, 1):
        assert plan.estimate is not None
        console.print(
            f"{rank}. {summary(plan.estimate)}" + "".join(f"\n   {n}" for n in plan.notes), markup=False
        )
