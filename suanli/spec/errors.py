"""One-line, user-facing errors for everything a user can submit or a run can meet.

A small hierarchy (as SkyPilot's `exceptions.py`): the CLI prints any `SuanliError` as one line
and exits 2; the API maps each kind to one HTTP status (`http_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError


class SuanliError(Exception):
    """A user-facing error: one line that names the cause. Never shown with a traceback."""

    http_status: ClassVar[int] = 400


class SpecError(SuanliError, ValueError):
    """A spec, flag or input file is wrong: one line that names the file, the field and what is expected."""

    http_status: ClassVar[int] = 422


class DatasetError(SpecError):
    """A public dataset the command needs is missing or unreadable (names the dataset and how to get it)."""

    http_status: ClassVar[int] = 404


class PlanInfeasible(SuanliError):
    """A valid request that no layout or placement can satisfy (names the binding limit)."""

    http_status: ClassVar[int] = 409


class ExecutorError(SuanliError):
    """The execution engine (local processes, Slurm, Ray) refused or lost a job."""

    http_status: ClassVar[int] = 502


class StoreError(SuanliError):
    """The job store cannot be read or written (names the URL, never the password)."""

    http_status: ClassVar[int] = 503


def one_line(message: str) -> str:
    """Several problems (one per line) as one line, for an HTTP `detail` or an engine's stderr."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def field_path(loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location as `pools[1].nodes`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "union[")):
            continue
        elif not str(part).isprintable() or not str(part):  # a key like '\r' keeps the message on one line
            path += f"[{str(part)!r}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(error: Mapping[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    kind = error["type"]
    got = error.get("input")
    if kind in {"missing"}:
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(error.get("ctx", {}).values()), "?")
        return f"must be {bounds[kind]} {limit}, got {got!r}"
    if kind in {"too_short", "too_long"}:
        return f"{message.lower()}"
    if kind.endswith("_parsing") or kind.endswith("_type") or kind == "literal_error":
        return f"{message.lower()}, got {got!r}"
    return message


def format_validation_error(source: str, error: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic ValidationError into one line per problem: `FILE: field.path: what is wrong`."""
    lines = []
    for item in error.errors():
        path = field_path(tuple(item["loc"]))
        if path == "(top level)" and not prefix:
            lines.append(f"{source}: {_describe(item)}")
            continue
        if prefix:
            path = f"{prefix}.{path}" if path != "(top level)" else prefix
        lines.append(f"{source}: {path}: {_describe(item)}")
    return "\n".join(dict.fromkeys(lines))
