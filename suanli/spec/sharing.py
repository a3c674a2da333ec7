"""The sharing model of one accelerator: the ways a device may be split between jobs (MIG instances,
MPS clients, time-slicing, Ascend vNPUs) and their geometry, as published by the vendor.

The data lives in `suanli/catalog/sharing.yaml`; `CATALOG.sharing(slug)` returns the model here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from suanli.spec.base import Spec

MIG_MEMORY_SLICES = 8  # NVIDIA MIG User Guide: every MIG GPU (A100/H100/H200/B200) has 8 memory slices
MIG_COMPUTE_SLICES = 7  # … and 7 compute (GPC) slices

ShareMode = Literal["exclusive", "mig", "fraction", "timeslice"]
SHARE_MODES: tuple[ShareMode, ...] = ("exclusive", "mig", "fraction", "timeslice")
MODE_MECHANISM = {"mig": "MIG", "fraction": "MPS", "timeslice": "time-slicing"}


class MigProfile(Spec):
    """One GPU-instance profile: `memory_slices` consecutive memory slices starting at one of `starts`."""

    name: str = Field(pattern=r"^\d+g\.\d+gb$")
    compute_slices: int = Field(ge=1, le=MIG_COMPUTE_SLICES)
    memory_slices: int = Field(ge=1, le=MIG_MEMORY_SLICES)
    starts: tuple[int, ...] = Field(min_length=1)
    instances: int = Field(ge=1, description="the guide's 'Number of Instances Available'")

    @model_validator(mode="after")
    def _consistent(self) -> MigProfile:
        if any(s < 0 or s + self.memory_slices > MIG_MEMORY_SLICES for s in self.starts):
            raise ValueError(
                f"{self.name}: a start in {self.starts} runs past the {MIG_MEMORY_SLICES} slices"
            )
        if self.instances != len(self.starts):
            raise ValueError(f"{self.name}: {self.instances} instances but {len(self.starts)} placements")
        return self

    @property
    def memory_gb(self) -> float:
        """The memory the profile name states (NVIDIA names a profile by its rounded memory)."""
        return float(re.fullmatch(r"\d+g\.(\d+)gb", self.name).group(1))  # type: ignore[union-attr]


class MigModel(Spec):
    profiles: list[MigProfile] = Field(min_length=1)
    source: str

    def profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.profiles if p.name == name), None)


class MpsModel(Spec):
    max_clients: int = Field(ge=1)
    source: str


class TimeSliceModel(Spec):
    source: str


class VnpuTemplate(Spec):
    name: str
    ai_cores: int = Field(ge=1)
    ai_cpus: int = Field(ge=0)
    memory_gb: float = Field(gt=0)


class VnpuModel(Spec):
    """Ascend virtual NPUs: fixed templates whose AI cores, AI CPUs and HBM add up within one chip."""

    chip: str
    ai_cores: int = Field(ge=1)
    ai_cpus: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    templates: list[VnpuTemplate] = Field(min_length=1)
    source: str

    @model_validator(mode="after")
    def _fit(self) -> VnpuModel:
        for t in self.templates:
            if t.ai_cores > self.ai_cores or t.ai_cpus > self.ai_cpus or t.memory_gb > self.memory_gb:
                raise ValueError(f"template {t.name} is larger than the {self.chip} chip")
        return self

    def template(self, name: str) -> VnpuTemplate | None:
        return next((t for t in self.templates if t.name == name), None)


class SharingModel(Spec):
    """How one accelerator may be shared; a mode absent here is refused for it."""

    accelerator: str
    mig: MigModel | None = None
    mps: MpsModel | None = None
    timeslice: TimeSliceModel | None = None
    vnpu: VnpuModel | None = None
    unsupported: str | None = Field(default=None, description="why no mode is offered, with its source")
    note: str | None = None

    def modes(self) -> list[str]:
        """The job sharing modes this accelerator can enforce, `exclusive` first."""
        offered = {"mig": self.mig, "fraction": self.mps, "timeslice": self.timeslice}
        return ["exclusive", *(mode for mode, model in offered.items() if model is not None)]

    def refusal(self, mode: str) -> str:
        """One line on why `mode` is not offered here (the vendor's note when there is one)."""
        mechanism = MODE_MECHANISM.get(mode, mode)
        why = self.unsupported or self.note or "the sharing catalog lists no such mechanism for it"
        return f"{self.accelerator} offers no {mechanism} ({why})"
