"""Execution engines behind one interface (`base.Executor`): local processes, Slurm, Ray Jobs,
and a simulated engine for `suanli up --simulate`."""

from __future__ import annotations

from typing import Any

from suanli.service.executors.base import Executor, Placement, Run, RunStatus
from suanli.spec import SpecError

EXECUTORS = ("local", "slurm", "ray")


def build_executor(name: str, **options: Any) -> Executor:
    if name == "local":
        options.pop("cluster", None)
        from suanli.service.executors.local import LocalExecutor

        return LocalExecutor()  # every pool of a cluster file runs on this machine
    if name == "slurm":
        from suanli.service.executors.slurm import SlurmExecutor

        return SlurmExecutor(**options)
    if name == "ray":
        from suanli.service.executors.ray import RayExecutor

        return RayExecutor(**options)
    raise SpecError(f"--executor: unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "Placement", "Run", "RunStatus", "build_executor"]
