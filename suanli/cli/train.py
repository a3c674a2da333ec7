"""`suanli train CONFIG.yaml`: run the training loop on this machine under torchrun."""

from __future__ import annotations

from pathlib import Path

import typer

from suanli.cli import app
from suanli.spec.errors import ExecutorError


@app.command("train")
def train(
    config: Path = typer.Argument(..., help="a train config (see examples/train/tiny.yaml)"),
    nproc: int = typer.Option(None, "--nproc", min=1, help="processes (one per device); default: layout dp"),
    inject_failure_at_step: int = typer.Option(
        None, "--inject-failure-at-step", min=1, help="kill the last rank during step N once (demo, test)"
    ),
    max_restarts: int = typer.Option(3, "--max-restarts", min=0, help="restarts torchrun allows"),
) -> None:
    """Train a model from a config, resuming from the newest checkpoint and restarting failed ranks.

    Example: suanli train examples/train/tiny.yaml --nproc 2 --inject-failure-at-step 6
    """
    from suanli.runtime.config import load_config  # torch loads only when a run is asked for
    from suanli.runtime.train import launch

    processes = nproc or load_config(config).resolved_layout().dp
    code = launch(config, processes, inject_failure_at_step, max_restarts)
    if code != 0:
        raise ExecutorError(f"training exited with status {code} (see the rank output above)")
