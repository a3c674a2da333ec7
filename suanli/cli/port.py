"""`suanli port SCRIPT.py --target npu`: move a CUDA script to another accelerator; say what will not move."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import typer

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.port.engine import Sources, TargetPort, port_all, write_ported
from suanli.port.support import TARGETS_ANY, SupportMatrix, support_matrix
from suanli.spec.errors import SpecError

_LIBRARY_COLUMNS = ["apex", "flash_attn", "xformers", "bitsandbytes", "deepspeed_ops", "triton"]


def _list_targets(matrix: SupportMatrix, as_json: bool) -> None:
    if as_json:
        print_json({name: target.model_dump() for name, target in matrix.targets.items()})
        return
    rows = []
    for target in matrix.targets.values():
        graphs = target.apis["CUDAGraph"].to or "-"
        rules = target.apis.values()
        shimmed = sum(rule.is_shim for rule in rules)
        missing = sum(rule.to is None for rule in rules)
        calls = f"{len(target.apis) - shimmed - missing}/{shimmed}/{missing}"
        dtypes = ",".join(name for name, ok in target.dtypes.items() if ok)
        libraries = " ".join(f"{key}:{target.libraries[key].status[:3]}" for key in _LIBRARY_COLUMNS)
        rows.append(
            [
                target.name,
                target.stack,
                target.module or "(in tree)",
                target.collective_backend,
                target.visible_devices_env or "-",
                calls,
                graphs,
                "yes" if target.fused_optimizers.supported else "no",
                dtypes,
                libraries,
            ]
        )
    columns = ["target", "stack", "module", "collectives", "visible devices", "torch.cuda calls"]
    columns += ["graphs", "fused opt"]
    caption = "torch.cuda calls: mapped / shimmed / no equivalent; libraries: supported / alternative / none"
    console.print(table("Port targets", [*columns, "dtypes", "libraries"], rows, caption))
    for target in matrix.targets.values():
        console.print(f"{target.name}: {target.versions}; vendor tool: {target.vendor_tool}")
        for source in target.sources:
            console.print(f"  source: {source}")


def _print_report(result: TargetPort) -> None:
    target = result.target
    typer.echo(f"{target.name} ({target.stack}): {result.verdict}")
    for finding in result.findings:
        typer.echo(f"  {finding.file}:{finding.line}  {finding.action:<9}  {finding.what}: {finding.detail}")
        if finding.alternative:
            typer.echo(f"      alternative: {finding.alternative}")
        if finding.source and finding.action in ("manual", "fallback"):
            typer.echo(f"      source: {finding.source}")
    if target.requires and result.verdict != "runs as is":
        typer.echo(f"  requires: {target.requires}")


def _machine_target(matrix: SupportMatrix) -> str:
    from suanli.runtime.devices import detect_backend  # torch loads only for --check

    family = detect_backend().family
    return next((name for name, t in matrix.targets.items() if t.family == family), "cpu")


def _check(sources: Sources, result: TargetPort, out: Path | None, steps: int, nproc: int, args: str) -> dict:
    from suanli.port.check import check

    entry = next(iter(sources.modules))
    with tempfile.TemporaryDirectory(prefix="suanli-port-") as scratch:
        folder = out or Path(scratch)
        write_ported(result, folder)
        outcome = check(
            sources.root / entry, folder / entry, steps, nproc=nproc, args=tuple(shlex.split(args))
        )
    return outcome.as_dict()


@app.command("port")
def port(
    paths: list[Path] = typer.Argument(None, help="CUDA training scripts, or folders of them"),
    target: str = typer.Option(TARGETS_ANY, "--target", "-t", help="npu, musa, mlu, xpu, hpu, cpu or any"),
    out: Path = typer.Option(None, "--out", "-o", help="write the ported files into this folder"),
    show_diff: bool = typer.Option(False, "--diff", help="print the rewrite as a unified diff"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    run_check: bool = typer.Option(
        False, "--check", help="run the ported script on this machine and compare its first losses"
    ),
    steps: int = typer.Option(5, "--steps", min=1, help="--check: losses to compare"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="--check: processes (torchrun) for DDP scripts"),
    script_args: str = typer.Option(
        "", "--args", help="--check: arguments for both runs, e.g. '--max_iters=5'"
    ),
    list_targets: bool = typer.Option(False, "--list-targets", help="show the support matrix and exit"),
) -> None:
    """Rewrite device-specific PyTorch to the device-agnostic API, and report per target what moved,
    what a shim stands in for, and what needs a person (with the vendor alternative and its source).

    Example: suanli port train.py --target npu --diff
    """
    matrix = support_matrix()
    if list_targets:
        _list_targets(matrix, as_json)
        return
    if target != TARGETS_ANY:
        matrix.target(target)
    if run_check:
        here = _machine_target(matrix)
        target = here if target == TARGETS_ANY else target
        if target != here:
            raise SpecError(f"--check: runs on this machine's device ({here}), not {target}")
        if not paths or not paths[0].is_file():
            raise SpecError("--check: the first path must be the script to run")
    if target == TARGETS_ANY and (out or show_diff):
        raise SpecError("--target: name one target to write or diff (any reports on all of them)")
    sources, results = port_all(list(paths or []), target)
    if out and out.resolve() == sources.root:
        raise SpecError(f"--out: {out} holds the originals; write the ported files to another folder")
    if out:
        for result in results:
            write_ported(result, out)
    checked = _check(sources, results[0], out, steps, nproc, script_args) if run_check else None
    if as_json:
        payload: dict = {"targets": [result.as_dict() for result in results]}
        if checked:
            payload["check"] = checked
        if show_diff:
            payload["diff"] = results[0].diff()
        print_json(payload)
    else:
        if show_diff:
            typer.echo(results[0].diff(), nl=False)
        for result in results:
            _print_report(result)
        if out:
            typer.echo(f"ported files written under {out}")
        if checked:
            _print_check(checked)
    if checked and (not checked["ported"]["ran"] or checked["same_losses"] is False):
        raise typer.Exit(1)


def _print_check(checked: dict) -> None:
    original, ported = checked["original"], checked["ported"]
    if not original["ran"]:
        typer.echo(f"check: the original does not run here: {original['error']}")
    if not ported["ran"]:
        typer.echo(f"check: the ported script failed: {ported['error']}")
        return
    losses = ", ".join(f"{loss:.6g}" for loss in ported["losses"])
    typer.echo(f"check: the ported script ran; first losses: {losses}")
    if checked["same_losses"] is not None:
        verdict = "same" if checked["same_losses"] else "DIFFERENT"
        typer.echo(
            f"check: {verdict} losses over {checked['compared_steps']} steps "
            f"(largest relative difference {checked['max_rel_diff']:.2e})"
        )
