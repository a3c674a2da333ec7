"""`suanli cluster discover`: write a cluster YAML from what the engine knows."""

from __future__ import annotations

from pathlib import Path

import typer

from suanli.cli import app
from suanli.spec import SpecError

cluster_app = typer.Typer(help="Cluster descriptions from the engines.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("discover")
def discover(
    executor: str = typer.Option("slurm", help="the engine to ask (slurm)"),
    name: str = typer.Option("discovered", help="the cluster's name"),
    output: Path = typer.Option(None, "-o", "--output", help="write here (default: stdout)"),
) -> None:
    """Pools from the engine (Slurm: one per partition and GPU GRES type), ready for `suanli up --cluster`.

    Example: suanli cluster discover --executor slurm -o centre.yaml
    """
    from suanli.service.discover import run_sinfo, slurm_cluster
    from suanli.spec import Cluster, dump_yaml, validate

    if executor != "slurm":
        raise SpecError(f"--executor: discovery reads slurm only so far, not {executor!r}")
    data, notes = slurm_cluster(run_sinfo(), name)
    text = dump_yaml(validate(Cluster, data, source="sinfo"))
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output} ({len(data['pools'])} pools)")
    else:
        typer.echo(text, nl=False)
