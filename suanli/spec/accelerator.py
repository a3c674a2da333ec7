"""`Accelerator`: one accelerator model and its published figures."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from suanli.spec.base import Spec

PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
Precision = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8"]
Confidence = Literal["high", "medium", "low", "none"]


class PeakTflops(Spec):
    """Dense (not sparse) datasheet peaks in TFLOPS (TOPS for int8); None where unpublished."""

    fp64: float | None = Field(default=None, ge=0)
    fp32: float | None = Field(default=None, ge=0)
    tf32: float | None = Field(default=None, ge=0)
    bf16: float | None = Field(default=None, ge=0)
    fp16: float | None = Field(default=None, ge=0)
    fp8: float | None = Field(default=None, ge=0)
    int8: float | None = Field(default=None, ge=0)


class Accelerator(Spec):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    vendor: str
    family: str = Field(
        description="runtime family: nvidia, amd, ascend, moore-threads, cambricon, hygon, ..."
    )
    aliases: list[str] = Field(default_factory=list)
    peak_tflops: PeakTflops = Field(default_factory=PeakTflops)
    memory_gb: float | None = Field(default=None, gt=0)
    memory_bw_gb_s: float | None = Field(default=None, gt=0)
    intra_node_link: str | None = None
    intra_node_bw_gb_s: float | None = Field(default=None, gt=0)
    intra_node_bw_direction: str | None = None
    form_factor: str | None = None
    tdp_w: float | None = Field(default=None, gt=0)
    software_stack: str
    source: str
    confidence: Confidence
    notes: str | None = None
    achievable_matmul_fraction: float | None = Field(default=None, gt=0, le=1)
    achievable_matmul_source: str | None = None

    def peak(self, precision: str) -> float | None:
        """Datasheet dense peak for `precision` in TFLOPS, None when unpublished."""
        return getattr(self.peak_tflops, precision)

    def unknown_figures(self) -> list[str]:
        """Names of the figures the catalog does not know for this accelerator."""
        missing = [f"{p}_tflops" for p in PRECISIONS if self.peak(p) is None]
        for field in ("memory_gb", "memory_bw_gb_s", "intra_node_bw_gb_s", "tdp_w"):
            if getattr(self, field) is None:
                missing.append(field)
        return missing
