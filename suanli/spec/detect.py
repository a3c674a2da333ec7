"""Recognise which kind of spec a YAML document is, so `suanli validate FILE` needs no flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from suanli.spec.accelerator import Accelerator
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.io import read_yaml, validate
from suanli.spec.job import JobSpec
from suanli.spec.model import ModelSpec
from suanli.spec.node import NodeType

SPEC_KINDS: dict[str, type[BaseModel]] = {
    "cluster": Cluster,
    "job": JobSpec,
    "model": ModelSpec,
    "node_type": NodeType,
    "accelerator": Accelerator,
}

_MARKERS = [
    ("cluster", {"pools"}),
    ("model", {"n_layers", "hidden"}),
    ("node_type", {"accelerators_per_node", "topology", "cpu_cores"}),
    ("accelerator", {"peak_tflops", "software_stack"}),
    ("job", {"run", "resources", "training", "model", "num_nodes"}),
]


def detect_kind(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    keys = set(data)
    best = max(_MARKERS, key=lambda marker: len(keys & marker[1]))
    return best[0] if keys & best[1] else None


def load_any(path: str | Path, kind: str | None = None) -> tuple[str, BaseModel]:
    """Load a spec file of any kind; `kind` overrides detection."""
    data = read_yaml(path)
    name = Path(path).name
    kind = kind or detect_kind(data)
    if kind is None:
        raise SpecError(
            f"{name}: cannot tell which kind of spec this is; pass --kind ({', '.join(SPEC_KINDS)})"
        )
    if kind not in SPEC_KINDS:
        raise SpecError(f"{name}: unknown spec kind {kind!r}; expected one of {', '.join(SPEC_KINDS)}")
    return kind, validate(SPEC_KINDS[kind], data, source=name)
