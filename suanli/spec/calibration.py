"""The one loader of the calibration room (`suanli/calibration/`): model constants and fitted factors."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from suanli.spec.io import parse_yaml


@cache
def load_calibration(filename: str) -> dict[str, Any]:
    """The parsed YAML file `filename` of `suanli/calibration/` (cached; treat it as read-only)."""
    text = resources.files("suanli.calibration").joinpath(filename).read_text(encoding="utf-8")
    return parse_yaml(text, source=f"suanli/calibration/{filename}") or {}
