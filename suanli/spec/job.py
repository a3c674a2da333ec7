"""`JobSpec`: what a user submits, shaped like a SkyPilot task (with a Slurm pass-through)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from suanli.spec.base import Spec
from suanli.spec.model import ModelSpec
from suanli.spec.units import parse_count, parse_duration_s, parse_memory_gb

Auto = Literal["auto"]
_ACCEL_RE = re.compile(
    r"^\s*(?P<name>(?P<lo>\d+(?:\.\d+)?\s*[GT]B)?\.\.(?P<hi>\d+(?:\.\d+)?\s*[GT]B)?|[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)"
    r"\s*(?::\s*(?P<count>\d+)(?:\.\.(?P<count_max>\d+))?)?\s*$",
    re.IGNORECASE,
)


class AcceleratorRequest(Spec):
    """One acceptable kind of accelerator: by name (`H100`), by memory range (`64GB..`) or `any`."""

    name: str | None = Field(default=None, description="catalog slug or alias; None = any type")
    min_memory_gb: float | None = None
    max_memory_gb: float | None = None
    count: int = Field(default=1, gt=0)
    count_max: int | None = Field(default=None, gt=0, description="elastic jobs: the most it can use")

    @classmethod
    def parse(cls, text: str) -> AcceleratorRequest:
        match = _ACCEL_RE.match(text)
        if not match:
            raise ValueError(
                f"expected NAME:COUNT (H100:8), a memory range (64GB..:8) or any:N, got {text!r}"
            )
        count = int(match.group("count") or 1)
        count_max = int(match.group("count_max")) if match.group("count_max") else None
        if count_max is not None and count_max < count:
            raise ValueError(f"count range {count}..{count_max} is empty in {text!r}")
        if ".." in match.group("name"):
            lo, hi = match.group("lo"), match.group("hi")
            return cls(
                min_memory_gb=parse_memory_gb(lo) if lo else None,
                max_memory_gb=parse_memory_gb(hi) if hi else None,
                count=count,
                count_max=count_max,
            )
        name = match.group("name").lower()
        return cls(name=None if name == "any" else name, count=count, count_max=count_max)

    def __str__(self) -> str:
        if self.name:
            what = self.name
        elif self.min_memory_gb or self.max_memory_gb:
            lo = f"{self.min_memory_gb:g}GB" if self.min_memory_gb else ""
            hi = f"{self.max_memory_gb:g}GB" if self.max_memory_gb else ""
            what = f"{lo}..{hi}"
        else:
            what = "any"
        return f"{what}:{self.count}" + (f"..{self.count_max}" if self.count_max else "")


class Resources(Spec):
    accelerators: list[AcceleratorRequest] = Field(
        default_factory=list, description="alternatives, any of which will do; empty = CPU job"
    )
    cpus: float | None = Field(default=None, gt=0, description="CPU cores per node")
    memory_gb: float | None = Field(default=None, gt=0, description="host memory per node")
    pool: str | None = Field(default=None, description="pin to one pool of the cluster")

    @field_validator("accelerators", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        """`H100:8`, `[H100:8, A100:8]` or `{H100: 8, A100: 8}` (SkyPilot's forms)."""
        if value is None:
            return []
        if isinstance(value, str):
            return [AcceleratorRequest.parse(value)]
        if isinstance(value, dict):
            return [
                AcceleratorRequest.parse(f"{name}:{count}" if count is not None else str(name))
                for name, count in value.items()
            ]
        if isinstance(value, list):
            return [AcceleratorRequest.parse(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("memory_gb", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        return parse_memory_gb(value) if isinstance(value, str) else value


class Training(Spec):
    seq_len: int = Field(default=4096, gt=0)
    global_batch_size: int = Field(default=1024, gt=0, description="sequences per optimizer step")
    total_tokens: int | None = Field(default=None, gt=0, description="token budget, e.g. 15T")
    precision: Literal["bf16", "fp16", "fp8", "fp32"] = "bf16"
    optimizer: Literal["adamw", "sgd"] = "adamw"

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        return parse_count(value) if isinstance(value, str) else value


Degree = int | Auto


class Parallelism(Spec):
    """torchtitan's names; each a number or `auto` (the planner decides)."""

    data_parallel_replicate_degree: Degree = "auto"
    data_parallel_shard_degree: Degree = "auto"
    tensor_parallel_degree: Degree = "auto"
    pipeline_parallel_degree: Degree = "auto"
    context_parallel_degree: Degree = "auto"
    expert_parallel_degree: Degree = "auto"
    pipeline_parallel_schedule: Literal["1F1B", "Interleaved1F1B", "auto"] = "auto"
    microbatch_size: Degree = "auto"
    activation_checkpoint: Literal["none", "selective", "full", "auto"] = "auto"

    @field_validator(
        "data_parallel_replicate_degree",
        "data_parallel_shard_degree",
        "tensor_parallel_degree",
        "pipeline_parallel_degree",
        "context_parallel_degree",
        "expert_parallel_degree",
        "microbatch_size",
    )
    @classmethod
    def _positive(cls, value: Degree) -> Degree:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be >= 1 or auto, got {value}")
        return value


class Sharing(Spec):
    """How much of an accelerator the job needs: whole (`exclusive`), a MIG profile, shares under
    MPS (`fraction`: SMs and memory capped per client) or time-slicing (`timeslice`: memory fenced
    by the runtime only). Which modes an accelerator offers: `suanli/catalog/sharing.yaml`."""

    mode: Literal["exclusive", "mig", "fraction", "timeslice"] = "exclusive"
    mig_profile: str | None = Field(default=None, pattern=r"^\d+g\.\d+gb$")
    memory_fraction: float | None = Field(default=None, gt=0, le=1)
    core_fraction: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if value == "exclusive":
            return {"mode": "exclusive"}
        if isinstance(value, dict) and "mode" not in value:
            if "mig" in value:
                return {"mode": "mig", "mig_profile": value["mig"]} | {
                    k: v for k, v in value.items() if k != "mig"
                }
            if "memory_fraction" in value or "core_fraction" in value:
                return {"mode": "fraction", **value}
        return value

    @model_validator(mode="after")
    def _complete(self) -> Sharing:
        if self.mode == "mig" and not self.mig_profile:
            raise ValueError("mig sharing needs a profile such as 1g.10gb")
        if self.mode == "fraction" and self.memory_fraction is None and self.core_fraction is None:
            raise ValueError("fraction sharing needs memory_fraction and/or core_fraction")
        if self.mode == "timeslice" and self.memory_fraction is None:
            raise ValueError("timeslice sharing needs memory_fraction (its share of device memory)")
        return self


class CheckpointPolicy(Spec):
    interval_s: float | Auto = Field(default="auto", alias="interval")
    folder: str = "checkpoints"
    keep_last: int = Field(default=3, gt=0)

    @field_validator("interval_s", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        return value if value == "auto" else parse_duration_s(value)


class JobSpec(Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    kind: Literal["training", "inference", "hpc"] = "training"
    resources: Resources = Field(default_factory=Resources)
    num_nodes: int | Auto = "auto"
    model: str | ModelSpec | None = Field(default=None, description="catalog slug or an inline model")
    application: str | None = Field(
        default=None,
        description="what the job runs, for run-time prediction: a declared job's work is weighed against "
        "the history of finished jobs of the same application (default: the model)",
    )
    training: Training | None = None
    parallelism: Parallelism = Field(default_factory=Parallelism)
    sharing: Sharing = Field(default_factory=Sharing)
    checkpoint: CheckpointPolicy | None = None
    queue: str = "default"
    priority: int = Field(default=0, ge=-1000, le=1000)
    walltime_s: float | None = Field(default=None, alias="walltime")
    setup: str | None = None
    run: str | None = None
    script: str | None = Field(
        default=None, description="a training script in workdir; run as `python SCRIPT` when `run` is empty"
    )
    port: Literal["auto", "off"] = Field(
        default="off", description="auto: port a CUDA script to each pool's accelerator at admission"
    )
    workdir: str | None = None
    envs: dict[str, str] = Field(default_factory=dict)
    secret_envs: list[str] = Field(
        default_factory=list,
        description="names in `envs` whose values never leave the server (the run gets them; the API, "
        "logs and /metrics show <secret>)",
    )
    slurm: dict[str, str | int] = Field(default_factory=dict, description="extra #SBATCH options")

    @field_validator("num_nodes")
    @classmethod
    def _nodes(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be >= 1 or auto, got {value}")
        return value

    @field_validator("walltime_s", mode="before")
    @classmethod
    def _walltime(cls, value: Any) -> Any:
        return None if value is None else parse_duration_s(value)

    @field_validator("envs", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _secrets_are_envs(self) -> JobSpec:
        unknown = [name for name in self.secret_envs if name not in self.envs]
        if unknown:
            raise ValueError(f"secret_envs: {unknown[0]!r} is not in envs")
        return self

    @model_validator(mode="after")
    def _something_to_do(self) -> JobSpec:
        if self.run is None and self.model is None and self.script is None:
            raise ValueError("a job needs a `run` command or a `model` to train (or a `script` to run)")
        if self.model is not None and self.kind == "hpc":
            raise ValueError("an hpc job runs a command, not a model: drop `model` or set kind: training")
        return self

    def resolved_model(self) -> ModelSpec | None:
        from suanli.spec.catalog import CATALOG

        if isinstance(self.model, str):
            return CATALOG.model(self.model, field="model")
        return self.model
