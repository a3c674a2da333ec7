"""`suanli share profiles` (how an accelerator may be split) and `suanli share pack` (how a set of
slices packs onto it)."""

from __future__ import annotations

import typer

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.sched.sharing import pack, parse_items
from suanli.spec.catalog import CATALOG

share_app = typer.Typer(help="GPU sharing: MIG profiles, MPS, time-slicing, vNPU.", no_args_is_help=True)
app.add_typer(share_app, name="share")


@share_app.command("profiles")
def profiles(
    gpu: str = typer.Option(..., "--gpu", help="accelerator slug, e.g. a100-sxm-80gb"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The sharing modes of one accelerator and its slice geometry, with sources.

    Example: suanli share profiles --gpu h200
    """
    model = CATALOG.sharing(gpu, field="--gpu")
    if as_json:
        print_json(model.model_dump(exclude_none=True) | {"modes": model.modes()})
        return
    console.print(f"[bold]{model.accelerator}[/bold]: job sharing modes {', '.join(model.modes())}")
    if model.mig:
        rows = [
            [
                p.name,
                str(p.compute_slices),
                str(p.memory_slices),
                ",".join(map(str, p.starts)),
                str(p.instances),
            ]
            for p in model.mig.profiles
        ]
        columns = ["profile", "compute slices", "memory slices", "starts", "max instances"]
        console.print(table("MIG profiles", columns, rows, caption=model.mig.source))
    if model.vnpu:
        rows = [[t.name, str(t.ai_cores), str(t.ai_cpus), f"{t.memory_gb:g}"] for t in model.vnpu.templates]
        console.print(
            table(f"vNPU templates ({model.vnpu.chip})", ["template", "AI cores", "AI CPUs", "GB"], rows)
        )
    for label, part in (("MPS", model.mps), ("time-slicing", model.timeslice)):
        if part:
            console.print(f"{label}: {part.source}")
    for text in (model.unsupported, model.note):
        if text:
            console.print(text)


@share_app.command("pack")
def pack_command(
    slices: list[str] = typer.Argument(
        ..., help="slices: 1g.10gb:7, 4g.40gb,3g.40gb, mps=0.25:4, vir05_1c_16g"
    ),
    gpu: str = typer.Option(..., "--gpu", help="accelerator slug, e.g. a100-sxm-80gb"),
    gpus: int = typer.Option(None, "--gpus", min=1, help="refuse when the slices need more GPUs than this"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Pack slices onto the fewest GPUs the way the scheduler would (largest first, MIG placement
    rules, one sharing mode per GPU).

    Example: suanli share pack --gpu a100-sxm-80gb 4g.40gb,2g.20gb,1g.10gb --json
    """
    result = pack(gpu, parse_items(gpu, slices), gpus)
    if as_json:
        print_json(result.to_dict())
        return
    rows = [
        [
            str(g["gpu"]),
            g["mode"],
            "  ".join(s["slice"] + (f"@{s['start']}" if "start" in s else "") for s in g["slices"]),
        ]
        for g in result.layout
    ]
    console.print(
        table(f"{result.placed} slices on {result.gpus_used} GPU(s)", ["gpu", "mode", "slices"], rows)
    )
