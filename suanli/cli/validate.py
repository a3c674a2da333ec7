"""`suanli validate FILE`: check any spec file; the kind is recognised from its fields."""

from __future__ import annotations

from pathlib import Path

import typer

from suanli.cli import app
from suanli.spec.detect import SPEC_KINDS, load_any


@app.command("validate")
def validate_file(
    file: Path = typer.Argument(..., help="a cluster, job, model, node-type or accelerator YAML"),
    kind: str = typer.Option(None, help=f"force the kind: {', '.join(SPEC_KINDS)}"),
) -> None:
    """Validate a spec file; errors name the file, the field and what is expected.

    Example: suanli validate examples/jobs/llama3.1-70b-pretrain.yaml
    """
    detected, _ = load_any(file, kind)
    typer.echo(f"{file}: valid {detected.replace('_', ' ')}")
