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
    executor: str = typer.Option("slurm", help="the engine to ask: slurm | ray"),
    name: str = typer.Option("discovered", help="the cluster's name"),
    ray_address: str = typer.Option(
        "http://127.0.0.1:8265", help="Ray dashboard address (with --executor ray)"
    ),
    output: Path = typer.Option(None, "-o", "--output", help="write here (default: stdout)"),
) -> None:
    """Pools from the engine (Slurm: one per partition and GPU GRES type; Ray: one per accelerator
    custom resource and node shape), ready for `suanli up --cluster`.

    Example: suanli cluster discover --executor slurm -o centre.yaml
    """
    from suanli.service.discover import ray_cluster, ray_nodes, run_sinfo, slurm_cluster
    from suanli.spec import Cluster, dump_yaml, validate

    if executor == "slurm":
        data, notes = slurm_cluster(run_sinfo(), name)
    elif executor == "ray":
        data, notes = ray_cluster(ray_nodes(ray_address), name)
    else:
        raise SpecError(f"--executor: discovery reads slurm or ray, not {executor!r}")
    text = dump_yaml(validate(Cluster, data, source=executor))
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output} ({len(data['pools'])} pools)")
    else:
        typer.echo(text, nl=False)
