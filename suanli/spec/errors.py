"""One-line, user-facing errors for everything a user can submit."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class SpecError(ValueError):
    """A user-facing error: one line that names the file, the field and what is expected."""


def field_path(loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location as `pools[1].nodes`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "union[")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(error: dict[str, Any]) -> str:
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
