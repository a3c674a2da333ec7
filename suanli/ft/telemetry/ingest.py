"""Read a centre's telemetry and failure records from CSV, JSON (a list) or JSON Lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from suanli.ft.telemetry.schema import FailureRecord, GpuSample
from suanli.spec.errors import SpecError
from suanli.spec.io import validate

T = TypeVar("T", bound=BaseModel)


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line number, raw record) pairs; CSV empty cells are left out so defaults apply."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise SpecError(f"{path}: not a readable text file") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = csv.DictReader(text.splitlines())
        return [
            (index + 2, {k: v for k, v in row.items() if k and v not in (None, "")})
            for index, row in enumerate(rows)
        ]
    if suffix in {".jsonl", ".ndjson"}:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise SpecError(f"{path.name}:{number}: invalid JSON: {exc.msg}") from None
        return records
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path.name}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if not isinstance(data, list):
            raise SpecError(f"{path.name}: expected a JSON list of records, got {type(data).__name__}")
        return [(index + 1, record) for index, record in enumerate(data)]
    raise SpecError(f"{path}: unknown format {suffix!r}; use .csv, .json or .jsonl")


def _load(model: type[T], path: str | Path, what: str) -> list[T]:
    path = Path(path)
    where = "line" if path.suffix.lower() != ".json" else "record"
    items = [validate(model, raw, source=f"{path.name} {where} {number}") for number, raw in _records(path)]
    if not items:
        raise SpecError(f"{path.name}: no {what} records")
    return items


def load_samples(path: str | Path) -> list[GpuSample]:
    """GPU telemetry samples; each problem is one line naming the file, record and field."""
    return _load(GpuSample, path, "telemetry")


def load_failures(path: str | Path) -> list[FailureRecord]:
    return _load(FailureRecord, path, "failure")
