"""A simulated engine for `suanli up --simulate CLUSTER.yaml`: nothing is executed; a run lasts
its walltime (the run time the scheduler assumes too, an hour when none is given) on a clock that
runs `speedup` times faster than the wall, so an operator can watch a large centre fill and drain."""

from __future__ import annotations

import time

from suanli.service.executors.base import Run, RunStatus
from suanli.service.scheduling import DEFAULT_RUNTIME_S


class SimulatedClock:
    """Seconds since the epoch, running `speedup` times faster than the wall from its creation."""

    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        self._start_wall_s = time.time()

    def __call__(self) -> float:
        return self._start_wall_s + (time.time() - self._start_wall_s) * self.speedup


class SimulatedExecutor:
    poll_interval_s = 0.0
    name = "simulated"

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self._ends_s: dict[str, float] = {}
        self._cancelled: set[str] = set()

    def submit(self, run: Run) -> str:
        self._ends_s[run.key] = self.clock() + (run.spec.walltime_s or DEFAULT_RUNTIME_S)
        return run.key

    def find(self, run: Run) -> str | None:
        return run.key if run.key in self._ends_s else None

    def poll(self, run: Run) -> RunStatus:
        end_s = self._ends_s.get(run.key)
        if end_s is None:
            return RunStatus("lost", reason="the simulation restarted")
        if run.key in self._cancelled:
            return RunStatus("failed", reason="cancelled")
        return RunStatus("succeeded", 0) if self.clock() >= end_s else RunStatus("running")

    def cancel(self, run: Run) -> None:
        self._cancelled.add(run.key)

    def logs(self, run: Run) -> str:
        end_s = self._ends_s.get(run.key)
        if end_s is None:
            return ""
        return f"simulated run of {run.spec.name} on {run.placement.nodes} node(s) of {run.placement.pool}\n"
