"""Read a user's scripts, port them to each asked target, and judge each target by its findings."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import libcst as cst

from suanli.port.rewrite import Action, FilePort, Finding, port_source
from suanli.port.support import SupportMatrix, Target, support_matrix
from suanli.spec.errors import SpecError

_KERNEL_SUFFIXES = (".cu", ".cuh")


class Verdict(StrEnum):
    AS_IS = "runs as is"
    AFTER_REWRITE = "runs after the rewrite"
    MANUAL = "needs the listed manual changes"


@dataclass(frozen=True)
class Sources:
    """Parsed Python files (display path -> tree) and CUDA kernel sources found beside them."""

    root: Path
    modules: dict[str, cst.Module]
    kernels: list[str]


@dataclass
class TargetPort:
    target: Target
    files: list[FilePort]
    findings: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        actions = {finding.action for finding in self.findings}
        if Action.MANUAL in actions:
            return Verdict.MANUAL
        if actions & {Action.REWRITTEN, Action.SHIMMED}:
            return Verdict.AFTER_REWRITE
        return Verdict.AS_IS

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.target.name,
            "stack": self.target.stack,
            "verdict": str(self.verdict),
            "requires": self.target.requires,
            "changed_files": [f.file for f in self.files if f.ported != f.original],
            "findings": [finding.as_dict() for finding in self.findings],
        }

    def diff(self) -> str:
        chunks: list[str] = []
        for port in self.files:
            chunks.extend(
                difflib.unified_diff(
                    port.original.splitlines(keepends=True),
                    port.ported.splitlines(keepends=True),
                    fromfile=f"a/{port.file}",
                    tofile=f"b/{port.file}",
                )
            )
        return "".join(chunks)


def _parse(path: Path, display: str) -> cst.Module:
    if path.suffix != ".py":
        raise SpecError(f"{display}: not a Python file (expected a .py script or a folder of them)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{display}: file not found") from None
    except UnicodeDecodeError:
        raise SpecError(f"{display}: not a text file (not UTF-8)") from None
    try:
        return cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        line, column, message = exc.editor_line, exc.editor_column, exc.message.splitlines()[0]
        try:  # Python's own parser names the cause better ("'(' was never closed")
            compile(text, display, "exec", dont_inherit=True)
        except SyntaxError as python:
            line, column, message = python.lineno or line, python.offset or column, python.msg
        raise SpecError(f"{display}:{line}:{column}: syntax error: {message}") from None


def _hidden(relative: Path) -> bool:
    """Inside a folder, `.venv`, `.git` and the port's own output (`.suanli-port`) are not the user's code."""
    return any(part.startswith(".") for part in relative.parts)


def read_sources(paths: list[Path]) -> Sources:
    """Scripts and folders to parse; display paths are relative to their common folder."""
    if not paths:
        raise SpecError("no script given: name a .py file or a folder")
    files: list[Path] = []
    kernels: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
            files.extend(p for p in found if p.suffix == ".py")
            kernels.extend(p for p in found if p.suffix in _KERNEL_SUFFIXES)
        elif path.suffix in _KERNEL_SUFFIXES and path.exists():
            kernels.append(path)
        else:
            files.append(path)
    if not files:
        raise SpecError(f"{paths[0]}: no Python files found")
    root = Path(os.path.commonpath([(p if p.is_dir() else p.parent).resolve() for p in paths]))
    modules = {}
    for path in files:
        display = path.resolve().relative_to(root).as_posix()
        modules[display] = _parse(path, str(path))
    return Sources(root, modules, [p.resolve().relative_to(root).as_posix() for p in kernels])


def port(sources: Sources, target: Target, matrix: SupportMatrix | None = None) -> TargetPort:
    """Port every file to `target` and collect the findings (kernel sources are manual findings)."""
    matrix = matrix or support_matrix()
    files = [port_source(name, module, target, matrix) for name, module in sources.modules.items()]
    library = target.libraries["cuda_extension"]
    kernels = [
        Finding(
            name,
            1,
            target.name,
            Action.MANUAL,
            Path(name).name,
            "a CUDA kernel source",
            library.alternative,
            library.source,
        )
        for name in sources.kernels
    ]
    findings = [finding for file in files for finding in file.findings] + kernels
    return TargetPort(target, files, findings)


def port_all(paths: list[Path], target: str) -> tuple[Sources, list[TargetPort]]:
    """Read the scripts once and port them to `target` (or to every target for `any`)."""
    matrix = support_matrix()
    targets = matrix.select(target)
    sources = read_sources(paths)
    return sources, [port(sources, t, matrix) for t in targets]


def write_ported(result: TargetPort, out: Path) -> list[Path]:
    """Write the ported files under `out` (a folder), keeping their relative paths."""
    written = []
    for file in result.files:
        destination = out / file.file
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(file.ported, encoding="utf-8")
        written.append(destination)
    return written
