"""`suanli train CONFIG.yaml`: run the training loop on this machine under the elastic launcher."""

from __future__ import annotations

from pathlib import Path

import typer

from suanli.cli import app
from suanli.spec.errors import ExecutorError


@app.command("train")
def train(
    config: Path = typer.Argument(..., help="a train config (see examples/train/tiny.yaml)"),
    nproc: int = typer.Option(
        None, "--nproc", min=1, help="processes (one per device); default: the layout's tp×pp×dp×cp"
    ),
    plan: Path = typer.Option(
        None, "--plan", help="a plan (`suanli plan --json` output: the first is taken) whose layout to run"
    ),
    inject_failure_at_step: int = typer.Option(
        None, "--inject-failure-at-step", min=1, help="kill the last rank during step N once (demo, test)"
    ),
    max_restarts: int = typer.Option(3, "--max-restarts", min=0, help="restarts after a rank fails"),
    fresh: bool = typer.Option(
        False, "--fresh", help="clear the config's checkpoints and metrics first (default: resume from them)"
    ),
) -> None:
    """Train a model from a config, resuming from the newest checkpoint and restarting failed ranks.

    Example: suanli train examples/train/tiny.yaml --fresh --inject-failure-at-step 12
    """
    import os

    from suanli.runtime.config import PLAN_ENV, load_config, read_plan  # torch loads only for a run
    from suanli.runtime.train import launch

    loaded = load_config(config)
    chosen = read_plan(plan) if plan is not None else None
    if chosen is None and loaded.layout == "auto":
        from suanli.runtime.parallel.planning import auto_plan

        chosen = auto_plan(loaded, nproc or 1)
        print(f"layout: auto -> {chosen.layout.short()} (planner, {nproc or 1} × {chosen.accelerator})")
    if chosen is not None:
        os.environ[PLAN_ENV] = chosen.model_dump_json()  # every rank (and preflight) reads this plan
        loaded = load_config(config)
    processes = nproc or loaded.resolved_layout().world_size
    code = launch(config, processes, inject_failure_at_step, max_restarts, fresh)
    if code != 0:
        raise ExecutorError(f"training exited with status {code} (see the rank output above)")
