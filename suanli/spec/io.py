"""Reading and writing spec files. Every failure becomes one `SpecError` line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from suanli.spec.errors import SpecError, format_validation_error

T = TypeVar("T", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a one-line SpecError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file") from None
    return parse_yaml(text, source=path.name)


def parse_yaml(text: str, source: str = "<input>") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}{where}: invalid YAML: {problem}") from None


def validate(model: type[T], data: Any, source: str = "<input>", prefix: str = "") -> T:
    """Validate `data` as `model`; errors name the source and the field path."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(source, exc, prefix)) from None
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def load(model: type[T], path: str | Path) -> T:
    return validate(model, read_yaml(path), source=Path(path).name)


def dump_yaml(spec: BaseModel) -> str:
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over `path`: a
    reader (or a crash) sees the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
