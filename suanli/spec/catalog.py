"""The built-in catalog: accelerators, node types and models, addressed by case-insensitive slugs."""

from __future__ import annotations

import difflib
from functools import cached_property
from importlib import resources
from typing import TypeVar

from pydantic import BaseModel

from suanli.spec.accelerator import Accelerator
from suanli.spec.device_backend import DeviceBackend
from suanli.spec.errors import SpecError
from suanli.spec.io import parse_yaml, validate
from suanli.spec.model import ModelSpec
from suanli.spec.node import NodeType
from suanli.spec.sharing import SharingModel

T = TypeVar("T", bound=BaseModel)


def _load_entries(filename: str, key: str, model: type[T]) -> list[T]:
    text = resources.files("suanli.catalog").joinpath(filename).read_text(encoding="utf-8")
    data = parse_yaml(text, source=filename)
    return [
        validate(model, entry, source=filename, prefix=f"{key}[{i}]") for i, entry in enumerate(data[key])
    ]


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


class Catalog:
    """Lookup by slug or alias; a miss raises a SpecError with a 'did you mean'."""

    @cached_property
    def accelerators(self) -> list[Accelerator]:
        return _load_entries("accelerators.yaml", "accelerators", Accelerator)

    @cached_property
    def node_types(self) -> list[NodeType]:
        return _load_entries("node_types.yaml", "node_types", NodeType)

    @cached_property
    def models(self) -> list[ModelSpec]:
        return _load_entries("models.yaml", "models", ModelSpec)

    @cached_property
    def sharing_models(self) -> dict[str, SharingModel]:
        entries = _load_entries("sharing.yaml", "sharing", SharingModel)
        return {entry.accelerator: entry for entry in entries}

    @cached_property
    def device_backends(self) -> dict[str, DeviceBackend]:
        """`device_backends.yaml` by accelerator family."""
        entries = _load_entries("device_backends.yaml", "backends", DeviceBackend)
        return {entry.family: entry for entry in entries}

    @staticmethod
    def _find(entries: list[T], name: str, what: str, field: str) -> T:
        index: dict[str, T] = {}
        for entry in entries:
            index[entry.slug] = entry  # type: ignore[attr-defined]
            for alias in getattr(entry, "aliases", []):
                index.setdefault(_normalise(alias), entry)
        key = _normalise(name)
        if key in index:
            return index[key]
        close = difflib.get_close_matches(key, index, n=3, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(index)[:12])}, …"
        )
        prefix = f"{field}: " if field else ""
        raise SpecError(f"{prefix}unknown {what} {name!r}{hint}")

    def accelerator(self, name: str, field: str = "") -> Accelerator:
        return self._find(self.accelerators, name, "accelerator", field)

    def node_type(self, name: str, field: str = "") -> NodeType:
        return self._find(self.node_types, name, "node type", field)

    def model(self, name: str, field: str = "") -> ModelSpec:
        return self._find(self.models, name, "model", field)

    def sharing(self, name: str, field: str = "") -> SharingModel:
        """How accelerator `name` may be shared; one with no entry is used whole only."""
        slug = self.accelerator(name, field).slug
        return self.sharing_models.get(slug) or SharingModel(accelerator=slug)


CATALOG = Catalog()
