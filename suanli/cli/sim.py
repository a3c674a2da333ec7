"""`suanli sim`: replay a trace through a scheduling policy; `suanli sim compare`: several policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.sched.cluster_state import ClusterState
from suanli.sched.policies import POLICIES, make_policy
from suanli.sched.simulator import SimConfig, SimResult, simulate
from suanli.sched.traces import TRACES, load_trace
from suanli.spec import Cluster, load
from suanli.spec.errors import SpecError

DEFAULT_CLUSTER = Path("examples/clusters/sia-64gpu.yaml")
HEADLINE = ("avg_jct_h", "p99_jct_h", "makespan_h", "utilization", "worst_ftf_rho")

sim_app = typer.Typer(help="Trace-driven scheduling simulation.", invoke_without_command=True)
app.add_typer(sim_app, name="sim")


def _cluster(path: Path | None) -> ClusterState:
    path = path or DEFAULT_CLUSTER
    if not path.exists():
        raise SpecError(f"--cluster: file not found: {path}")
    return ClusterState.from_cluster(load(Cluster, path))


def _run(
    trace: str,
    workload: str,
    cluster: Path | None,
    policy: str,
    config: SimConfig,
    limit: int | None,
    elastic: bool = False,
) -> SimResult:
    if trace not in TRACES:
        raise SpecError(f"--trace: unknown trace {trace!r}; one of {', '.join(TRACES)}")
    chosen = make_policy(policy)
    state = _cluster(cluster)
    return simulate(state, chosen, load_trace(trace, workload, state, limit, elastic), config)


@sim_app.callback()
def sim(
    ctx: typer.Context,
    trace: str = typer.Option("sia-saturn", help=f"one of {', '.join(TRACES)}"),
    workload: str = typer.Option(
        "1", help="Sia workload number, or a trace file (philly: default the full list in datasets/)"
    ),
    cluster: Path = typer.Option(None, help=f"cluster YAML (default {DEFAULT_CLUSTER})"),
    policy: str = typer.Option("suanli", help=f"one of {', '.join(POLICIES)}"),
    seed: int = typer.Option(0, help="seed of the failure draws"),
    failures_per_1k_gpu_month: float = typer.Option(0.0, help="inject failures at this rate (Llama 3: 14.2)"),
    estimate_error: float = typer.Option(0.5, help="σ of the lognormal error of each job's declared work"),
    runtime_knowledge: str = typer.Option(
        "declared", help="declared: policies see declared work; none: no duration at all"
    ),
    tick: float = typer.Option(0.0, help="decide every TICK seconds (0: on every event)"),
    limit: int = typer.Option(None, help="only the first N jobs of the trace"),
    elastic: bool = typer.Option(
        False, help="Sia traces: jobs may be resized (1 to 64 GPUs, adaptive batch; see --policy elastic)"
    ),
    plot: Path = typer.Option(None, help="write JCT-CDF and utilisation plots into this folder"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Simulate one policy on one workload and print its metrics.

    Example: suanli sim --trace sia-saturn --workload 3 --policy gavel --json
    """
    if ctx.invoked_subcommand is not None:
        return
    config = SimConfig(
        seed=seed,
        failures_per_1k_gpu_month=failures_per_1k_gpu_month,
        estimate_error=estimate_error,
        runtime_knowledge=runtime_knowledge,  # type: ignore[arg-type]  # checked by estimate.declare
        tick_s=tick,
    )
    result = _run(trace, workload, cluster, policy, config, limit, elastic)
    if plot:
        from suanli.sched.plots import plot_results

        plot_results([result], plot)
    metrics = {
        "policy": policy,
        "trace": trace,
        "workload": workload,
        "estimate_error": estimate_error,
        "runtime_knowledge": runtime_knowledge,
        "tick_s": tick,
        "elastic": elastic,
        **result.metrics,
    }
    metrics["rejected"] = len(result.rejected)
    if as_json:
        print_json(metrics)
        return
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in metrics.items()]
    console.print(table(f"{policy} on {trace} workload {workload}", ["metric", "value"], rows))


@sim_app.command("compare")
def compare(
    trace: str = typer.Option("sia-saturn", help=f"one of {', '.join(TRACES)}"),
    workloads: str = typer.Option("1,2,3", help="comma-separated Sia workload numbers or files"),
    cluster: Path = typer.Option(None, help=f"cluster YAML (default {DEFAULT_CLUSTER})"),
    policies: str = typer.Option("fifo,backfill,tiresias,gavel,suanli", help="comma-separated policies"),
    seed: int = typer.Option(0),
    estimate_error: float = typer.Option(0.5, help="σ of the lognormal error of each job's declared work"),
    runtime_knowledge: str = typer.Option("declared", help="declared or none"),
    tick: float = typer.Option(0.0, help="decide every TICK seconds (0: on every event)"),
    limit: int = typer.Option(None, help="only the first N jobs of each workload"),
    elastic: bool = typer.Option(False, help="Sia traces: jobs may be resized (see suanli sim --elastic)"),
    plot: Path = typer.Option(None, help="write JCT-CDF and utilisation plots into this folder"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run several policies on the same workloads; print mean ± std over the workloads.

    Example: suanli sim compare --trace sia-philly --workloads 1,2,3,4,5,6
    """
    names = [p.strip() for p in policies.split(",") if p.strip()]
    for name in names:
        make_policy(name)  # unknown names fail before any run
    config = SimConfig(
        seed=seed,
        estimate_error=estimate_error,
        runtime_knowledge=runtime_knowledge,  # type: ignore[arg-type]  # checked by estimate.declare
        tick_s=tick,
    )
    results: dict[str, list[SimResult]] = {name: [] for name in names}
    for workload in [w.strip() for w in workloads.split(",") if w.strip()]:
        for name in names:
            results[name].append(_run(trace, workload, cluster, name, config, limit, elastic))
    summary = {
        name: {
            key: {
                "mean": float(np.mean([r.metrics.get(key, 0.0) for r in runs])),
                "std": float(np.std([r.metrics.get(key, 0.0) for r in runs])),
            }
            for key in (*HEADLINE, "restarts_per_job", "decision_ms_mean")
        }
        for name, runs in results.items()
    }
    if plot:
        from suanli.sched.plots import plot_results

        plot_results([r for runs in results.values() for r in runs[:1]], plot)
    if as_json:
        print_json(summary)
        return
    columns = ["policy", *HEADLINE, "restarts_per_job"]
    rows = [
        [name] + [f"{s[k]['mean']:.3g} ± {s[k]['std']:.2g}" for k in columns[1:]]
        for name, s in summary.items()
    ]
    console.print(table(f"{trace}: workloads {workloads}", columns, rows))
