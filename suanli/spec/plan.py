"""`Plan`: a parallel layout, where it runs, and what the performance model expects of it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from suanli.spec.base import Spec

Recompute = Literal["none", "selective", "full"]
PipelineSchedule = Literal["1F1B", "Interleaved1F1B"]


class Layout(Spec):
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    vpp: int = Field(default=1, ge=1, description="virtual stages per pipeline rank (interleaving)")
    dp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    cp: int = Field(default=1, ge=1)
    zero_stage: Literal[0, 1, 2, 3] = Field(default=1, description="1 = distributed optimizer, 3 = FSDP")
    micro_batch: int = Field(default=1, ge=1)
    recompute: Recompute = "none"
    sequence_parallel: bool = True
    schedule: PipelineSchedule = "1F1B"

    @property
    def world_size(self) -> int:
        """GPUs used: EP is folded into DP (experts are sharded across data-parallel ranks)."""
        return self.tp * self.pp * self.dp * self.cp

    @model_validator(mode="after")
    def _consistent(self) -> Layout:
        if self.dp % self.ep and self.ep % self.dp:
            raise ValueError(f"ep ({self.ep}) must divide dp ({self.dp})")
        if self.vpp > 1 and self.pp == 1:
            raise ValueError("vpp > 1 needs pp > 1")
        return self

    def short(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}" + (f"v{self.vpp}" if self.vpp > 1 else ""), f"DP{self.dp}"]
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        if self.cp > 1:
            parts.append(f"CP{self.cp}")
        parts.append(f"Z{self.zero_stage}")
        parts.append(f"mb{self.micro_batch}")
        if self.recompute != "none":
            parts.append(f"rc-{self.recompute}")
        return " ".join(parts)


class StepEstimate(Spec):
    """One training step, broken down so the user sees what binds."""

    step_time_s: float = Field(ge=0)
    compute_s: float = Field(ge=0)
    exposed_comm_s: dict[str, float] = Field(default_factory=dict, description="per parallel dimension")
    bubble_s: float = Field(default=0.0, ge=0)
    optimizer_s: float = Field(default=0.0, ge=0)
    other_s: float = Field(default=0.0, ge=0)
    mfu: float = Field(ge=0)
    hfu: float = Field(ge=0)
    tokens_per_s: float = Field(ge=0)
    memory_gb_per_gpu: float = Field(ge=0)
    memory_breakdown_gb: dict[str, float] = Field(default_factory=dict)
    fits: bool = True
    binding: str = Field(default="", description="which balance binds: compute, network, memory, io")


class StageAssignment(Spec):
    """One part of a heterogeneous plan: a pipeline stage (a span of layers) on one pool, or a
    whole data-parallel group (all layers, its own layout and share of the batch) on one pool."""

    pool: str
    gpus: int = Field(gt=0)
    layers: int = Field(ge=0)
    kind: Literal["pipeline-stage", "data-parallel-group"] = "pipeline-stage"
    accelerator: str | None = None
    layout: Layout | None = Field(default=None, description="a data-parallel group's own layout")
    global_batch: int | None = Field(
        default=None, gt=0, description="a data-parallel group's sequences per step"
    )
    step_time_s: float | None = Field(default=None, ge=0)


class Plan(Spec):
    pool: str | None = Field(default=None, description="the pool, for a single-type plan")
    accelerator: str
    gpus: int = Field(gt=0)
    layout: Layout
    stages: list[StageAssignment] = Field(default_factory=list, description="heterogeneous plans")
    estimate: StepEstimate | None = None
    time_to_train_s: float | None = None
    gpu_hours: float | None = None
    cost: float | None = None
    notes: list[str] = Field(default_factory=list)
