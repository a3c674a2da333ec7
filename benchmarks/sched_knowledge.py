"""Policies without an oracle: every policy on the Sia workloads over declared-work error σ, decision
tick and runtime knowledge, judged against the true durations (64-GPU T4/RTX/A100 cluster).

Each cell (trace, workload, policy, σ, tick, knowledge) is one simulation written to its own JSON
file in --out, so runs resume where they stopped and several may run side by side on disjoint
--shard values. Cells run in priority order (`cells`); the headline is σ = 0.5, event-driven.
`--table` prints the markdown tables of what is done.

    .venv/bin/python benchmarks/sched_knowledge.py [--shard 0/2] [--budget-s 3000]
    .venv/bin/python benchmarks/sched_knowledge.py --table

`--variant JSON` runs the `suanli` policy with those fields changed (e.g. '{"rho_guard": 1.0}') on the
tuning workloads only (philly and saturn, never newTrace), event-driven at `--sigma` (default 0.5),
and prints each trace's mean avg JCT, max worst ρ and mean restarts/job: the ablations of §6.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from cell_grid import add_grid_arguments, run_grid

from suanli.sched.cluster_state import ClusterState
from suanli.sched.policies import POLICIES, make_policy
from suanli.sched.policies.suanli import SuanliPolicy
from suanli.sched.simulator import LivelockError, SimConfig, simulate
from suanli.sched.traces.sia import load_sia_workload, workload_path
from suanli.spec import Cluster, load

CLUSTER = Path("examples/clusters/sia-64gpu.yaml")
WORKLOADS = {"philly": range(1, 7), "saturn": range(1, 8), "newtrace": range(1, 8)}
SIGMAS = (0.0, 0.25, 0.5, 1.0)
TICKS = (0.0, 10.0, 60.0)
# Policies that read no duration at all give the same run at every σ: run them once per tick.
DURATION_BLIND = {"fifo", "tiresias", "gavel"}
# The rigid-job policies; `elastic` resizes elastic jobs and has its own benchmark (sched_elastic.py).
RIGID = sorted(set(POLICIES) - {"elastic"})
KEYS = ("avg_jct_h", "worst_ftf_rho", "restarts_per_job")

Cell = tuple[str, int, str, float, float, str]


def cells() -> Iterator[Cell]:
    """No knowledge first; then σ = 0.5 at every tick on the lighter traces, newTrace's σ = 0.5
    event-driven runs, the other σ event-driven, and the rest."""
    light, heavy = ("philly", "saturn"), ("newtrace",)
    phases = [
        (light, [(0.5, t) for t in TICKS]),
        (heavy, [(0.5, 0.0)]),
        (light, [(s, 0.0) for s in SIGMAS if s != 0.5]),
        (heavy, [(0.5, t) for t in TICKS if t] + [(s, 0.0) for s in SIGMAS if s != 0.5]),
        (light + heavy, [(s, t) for t in TICKS if t for s in SIGMAS if s != 0.5]),
    ]
    for trace, numbers in WORKLOADS.items():
        for n in numbers:
            yield trace, n, "suanli", 0.5, 0.0, "none"
    for traces, grid in phases:
        for sigma, tick in grid:
            for trace in traces:
                for n in WORKLOADS[trace]:
                    for policy in RIGID:
                        if policy in DURATION_BLIND and sigma != 0.5:
                            continue
                        yield trace, n, policy, sigma, tick, "declared"


def path_of(out: Path, cell: Cell) -> Path:
    trace, n, policy, sigma, tick, knowledge = cell
    return out / f"{trace}-{n}-{policy}-s{sigma}-t{tick:g}-{knowledge}.json"


def run_cell(cell: Cell) -> dict[str, float | str]:
    trace, n, policy, sigma, tick, knowledge = cell
    state = ClusterState.from_cluster(load(Cluster, CLUSTER))
    config = SimConfig(estimate_error=sigma, tick_s=tick, runtime_knowledge=knowledge)  # type: ignore[arg-type]
    started = time.perf_counter()
    try:
        metrics: dict[str, float | str] = dict(
            simulate(state, make_policy(policy), load_sia_workload(workload_path(trace, n)), config).metrics
        )
    except LivelockError as exc:
        metrics = {"error": str(exc)}
    metrics["wall_s"] = time.perf_counter() - started
    return metrics


def load_done(out: Path) -> dict[Cell, dict]:
    done = {}
    for cell in cells():
        path = path_of(out, cell)
        if path.exists():
            done[cell] = json.loads(path.read_text())
    return done


def fmt(runs: list[dict], key: str, how: str = "mean") -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return "livelock" if runs else "—"
    return f"{(np.mean(values) if how == 'mean' else np.max(values)):.2f}"


def table(out: Path) -> None:
    done = load_done(out)

    def runs(trace: str, policy: str, sigma: float, tick: float, knowledge: str = "declared") -> list[dict]:
        if policy in DURATION_BLIND:
            sigma = 0.5
        return [done[c] for c in done if c[0] == trace and c[2:] == (policy, sigma, tick, knowledge)]

    print("Headline: σ = 0.5, event-driven; mean avg JCT (h), max worst ρ, mean restarts; n = workloads done")
    print()
    print("| trace | policy | n | avg JCT h | worst ρ | restarts/job |")
    print("|---|---|---|---|---|---|")
    for trace in WORKLOADS:
        for policy, knowledge in [(p, "declared") for p in RIGID] + [("suanli", "none")]:
            r = runs(trace, policy, 0.5, 0.0, knowledge)
            label = policy if knowledge == "declared" else f"{policy} (knowledge none)"
            cols = (fmt(r, "avg_jct_h"), fmt(r, "worst_ftf_rho", "max"), fmt(r, "restarts_per_job"))
            print(f"| {trace} | {label} | {len(r)} | " + " | ".join(cols) + " |")
    print()
    print("Grid: mean avg JCT h / max worst ρ over the workloads done (n), per σ and tick")
    print()
    header = [f"σ={s:g} t={t:g}" for t in TICKS for s in SIGMAS]
    print("| trace | policy | " + " | ".join(header) + " |")
    print("|---|---|" + "---|" * len(header))
    for trace in WORKLOADS:
        for policy in RIGID:
            row: list[str] = []
            for tick in TICKS:
                for sigma in SIGMAS:
                    r = runs(trace, policy, sigma, tick)
                    row.append(
                        f"{fmt(r, 'avg_jct_h')} / {fmt(r, 'worst_ftf_rho', 'max')} ({len(r)})" if r else "—"
                    )
            print(f"| {trace} | {policy} | " + " | ".join(row) + " |")


def variant(fields: dict[str, float], sigma: float) -> None:
    """`suanli` with `fields` changed, on the tuning workloads at σ, event-driven."""
    config = SimConfig(estimate_error=sigma)
    for trace in ("philly", "saturn"):
        runs = []
        for n in WORKLOADS[trace]:
            state = ClusterState.from_cluster(load(Cluster, CLUSTER))
            jobs = load_sia_workload(workload_path(trace, n))
            runs.append(simulate(state, SuanliPolicy(**fields), jobs, config).metrics)  # type: ignore[arg-type]
        print(
            f"{trace} σ={sigma:g} {json.dumps(fields)}: avg JCT {fmt(runs, 'avg_jct_h')} h, worst ρ "
            f"{fmt(runs, 'worst_ftf_rho', 'max')}, restarts {fmt(runs, 'restarts_per_job')}; per workload:"
            + "".join(f" {r['avg_jct_h']:.2f}/{r['worst_ftf_rho']:.2f}" for r in runs)
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    add_grid_arguments(parser, "build/sched_knowledge")
    parser.add_argument("--variant", type=json.loads, help="suanli's fields to change, as JSON (ablation)")
    parser.add_argument("--sigma", type=float, default=0.5, help="σ of the declared-work error (--variant)")
    parser.add_argument("--policies", help="comma-separated: run only these policies' cells (after a change)")
    args = parser.parse_args()
    if args.variant is not None:
        variant(args.variant, args.sigma)
    elif args.table:
        table(args.out)
    else:
        chosen = set(args.policies.split(",")) if args.policies else set(POLICIES)
        run_grid((c for c in cells() if c[2] in chosen), args, path_of, run_cell, KEYS)


if __name__ == "__main__":
    main()
