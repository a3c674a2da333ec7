"""`TrainConfig`: everything one training run needs, loaded from YAML with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from suanli.perf.checkpoint_interval import DEFAULT_JOB_MTBF_S
from suanli.spec.base import Spec
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SpecError
from suanli.spec.io import read_yaml, validate
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout, Plan, StageAssignment

PLAN_ENV = "SUANLI_TRAIN_PLAN"  # a Plan as JSON, handed to every rank by the launching command


class DataConfig(Spec):
    kind: Literal["synthetic", "file"] = "synthetic"
    path: str | None = Field(default=None, description="flat binary token file, for kind: file")
    dtype: Literal["uint16", "uint32", "int32"] = "uint16"
    seed: int = 0
    max_stride: int = Field(default=2, gt=0, description="synthetic: steps between consecutive token ids")

    @model_validator(mode="after")
    def _file_has_path(self) -> DataConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("kind: file needs a path to a tokenized file")
        return self


class OptimizerConfig(Spec):
    """AdamW (Loshchilov & Hutter, 2019) with linear warmup and cosine decay to `min_lr_ratio * lr`."""

    lr: float = Field(default=3e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    warmup_steps: int = Field(default=10, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float | None = Field(default=1.0, gt=0)


class CheckpointConfig(Spec):
    folder: str = Field(description="where the disk tier lives; relative to the config file")
    every_steps: int | None = Field(default=None, gt=0, description="fixed interval; None = interval planner")
    mtbf_s: float = Field(
        default=DEFAULT_JOB_MTBF_S, gt=0, description="job-level mean time between failures"
    )
    keep_last: int = Field(default=2, gt=0, description="committed disk checkpoints kept")
    disk_every: int = Field(
        default=1, gt=0, description="every k-th save also goes to disk; others memory only"
    )


class MetricsConfig(Spec):
    path: str = Field(default="metrics.jsonl", description="JSON lines; relative to the config file")
    peak_tflops: float | None = Field(
        default=None, gt=0, description="per-device peak; default: catalog datasheet, or measured on CPU"
    )


class MoEOptions(Spec):
    capacity_factor: float | None = Field(
        default=None, gt=0, description="tokens an expert accepts, × its even share; None = never drop"
    )
    balance_loss_coefficient: float = Field(
        default=0.01, ge=0, description="weight of the Switch load-balance loss (Fedus et al. use 0.01)"
    )


class ParallelOptions(Spec):
    """What a `Layout` does not say but the runtime needs to run it."""

    dp_replicate: int = Field(
        default=1,
        ge=1,
        description="HSDP: FSDP2 shards within groups of dp / dp_replicate, replicates across",
    )
    batch_shares: list[int] | None = Field(
        default=None,
        description="mixed-speed data parallelism: sequences per step of each data-parallel rank "
        "(default: the plan's data-parallel groups, else an even split)",
    )
    emulated_slowdown: list[float] | None = Field(
        default=None,
        description="benchmarks: data-parallel rank i computes slowdown[i] times slower (CPU emulation of "
        "a slower accelerator)",
    )


class TrainConfig(Spec):
    model: str | ModelSpec = Field(description="catalog slug or an inline model")
    accelerator: str | None = Field(default=None, description="catalog slug; None = detect (CPU if none)")
    plan: str | Plan | None = Field(
        default=None, description="a planner Plan (file or inline); gives the layout"
    )
    layout: Layout | Literal["auto"] | None = Field(
        default=None, description="the parallel layout when no plan is given; auto = ask the planner"
    )
    parallel: ParallelOptions = Field(default_factory=ParallelOptions)
    moe: MoEOptions = Field(default_factory=MoEOptions)
    seq_len: int = Field(gt=0)
    global_batch_size: int = Field(gt=0, description="sequences per optimizer step, across all ranks")
    steps: int = Field(gt=0)
    precision: Literal["fp32", "bf16"] = "bf16"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    checkpoint: CheckpointConfig | None = None
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _one_layout(self) -> TrainConfig:
        if self.plan is not None and self.layout is not None:
            raise ValueError("give either plan or layout, not both (a plan carries its layout)")
        return self

    def resolved_model(self) -> ModelSpec:
        spec = CATALOG.model(self.model, field="model") if isinstance(self.model, str) else self.model
        if self.seq_len > spec.max_seq_len:
            raise SpecError(f"seq_len: {self.seq_len} exceeds {spec.slug}'s max_seq_len {spec.max_seq_len}")
        return spec

    def resolved_plan(self) -> Plan | None:
        if isinstance(self.plan, str):
            return read_plan(self.plan)
        return self.plan

    def resolved_layout(self, world_size: int | None = None) -> Layout:
        """The plan's layout, else the configured one, else plain DDP over `world_size` processes.

        A mixed-speed plan (data-parallel groups of different pools) runs as one data-parallel
        group of all its ranks, each taking its share of the batch (`batch_shares`)."""
        plan = self.resolved_plan()
        if plan is not None:
            groups = data_parallel_groups(plan)
            if groups:
                return plan.layout.model_copy(update={"dp": sum(g.layout.dp for g in groups if g.layout)})
            return plan.layout
        if self.layout == "auto":
            raise SpecError(
                "layout: auto must be resolved by the planner first (suanli.runtime.parallel.auto)"
            )
        return self.layout or Layout(dp=world_size or 1, zero_stage=0)

    def resolved_batch_shares(self, dp: int) -> list[int] | None:
        """Sequences per step of each data-parallel rank: configured, the plan's groups, or None (even)."""
        if self.parallel.batch_shares is not None:
            shares = self.parallel.batch_shares
        else:
            plan = self.resolved_plan()
            groups = data_parallel_groups(plan) if plan is not None else []
            shares = [
                g.global_batch // g.layout.dp
                for g in groups
                if g.layout and g.global_batch
                for _ in range(g.layout.dp)
            ]
        if not shares:
            return None
        if len(shares) != dp or sum(shares) != self.global_batch_size:
            raise SpecError(
                f"parallel.batch_shares: {shares} must give {dp} data-parallel ranks "
                f"{self.global_batch_size} sequences in all"
            )
        return shares

    def predicted_step_time_s(self) -> float | None:
        """The planner's step time for this layout, when the plan carries an estimate."""
        plan = self.resolved_plan()
        return plan.estimate.step_time_s if plan is not None and plan.estimate is not None else None


def read_plan(path: str | Path) -> Plan:
    """A plan file: one Plan, or the list `suanli plan --json` prints (its first, the best, is taken)."""
    data = read_yaml(path)
    if isinstance(data, list):
        if not data:
            raise SpecError(f"{Path(path).name}: the plan list is empty")
        data = data[0]
    return validate(Plan, data, source=Path(path).name)


def data_parallel_groups(plan: Plan) -> list[StageAssignment]:
    return [s for s in plan.stages if s.kind == "data-parallel-group"]


def load_config(path: str | Path) -> TrainConfig:
    """Read a train config; relative paths inside it are taken from the config file's folder.

    A plan in `PLAN_ENV` (set by `suanli train --plan` or resolved from `layout: auto` before the
    processes start) replaces the config's own plan or layout."""
    path = Path(path)
    config = validate(TrainConfig, read_yaml(path), source=path.name)
    base = path.resolve().parent
    updates: dict[str, object] = {}
    if isinstance(config.plan, str):
        updates["plan"] = str(base / config.plan)
    if config.data.path:
        updates["data"] = config.data.model_copy(update={"path": str(base / config.data.path)})
    if config.checkpoint:
        folder = str(base / config.checkpoint.folder)
        updates["checkpoint"] = config.checkpoint.model_copy(update={"folder": folder})
    updates["metrics"] = config.metrics.model_copy(update={"path": str(base / config.metrics.path)})
    if os.environ.get(PLAN_ENV):
        updates |= {"plan": Plan.model_validate_json(os.environ[PLAN_ENV]), "layout": None}
    return config.model_copy(update=updates)
