"""A simulated engine for `suanli up --simulate CLUSTER.yaml`: nothing is executed; a run lasts
its walltime (the run time the scheduler assumes too, an hour when none is given), or what a trace
replay says it truly takes on its accelerator type, on a clock that runs `speedup` times faster than
the wall (an operator watches a large centre fill and drain) or jumps from event to event."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from suanli.service.executors.base import Run, RunStatus
from suanli.service.scheduling import DEFAULT_RUNTIME_S


class SimulatedClock:
    """Seconds since the epoch, running `speedup` times faster than the wall from its creation."""

    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        self._start_wall_s = time.time()

    def __call__(self) -> float:
        return self._start_wall_s + (time.time() - self._start_wall_s) * self.speedup


class EventClock:
    """Simulated seconds that pass only when the driver says: a replay as fast as the machine allows
    jumps to the next arrival or run end, as the discrete-event simulator (`suanli.sched.simulator`) does."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance_to(self, time_s: float) -> None:
        self.now_s = max(self.now_s, time_s)


class WorkCurve(Protocol):
    """Progress of a run whose rate changes as it trains (an elastic job's goodput moves with its
    epoch), in fractions of its true work, on the placement it was given, at full speed."""

    def seconds_to(self, done: float, target: float) -> float: ...

    def advance(self, done: float, seconds: float) -> float: ...


@dataclass(frozen=True)
class TrueRun:
    """What a trace says about a job on the type it was placed on: its whole run time (or, for an
    elastic job, its work curve on this placement), and the start-up cost every (re)start pays before
    it makes progress."""

    runtime_s: float
    restart_overhead_s: float = 0.0
    checkpoint_s: float = 0.0  # each save stalls the run this long
    checkpoint_cycle_s: float | None = None  # run time from one checkpoint to the next, save included
    placement_speed: float = 1.0  # of its packed speed, where its collectives are slower (spread gangs)
    curve: WorkCurve | None = None  # None: it progresses at 1 / runtime_s

    @property
    def speed(self) -> float:
        """Its progress per wall second against running packed and never saving: the placement's
        speed, times the share of time outside checkpoint saves (Daly's model)."""
        cycle_s = self.checkpoint_cycle_s
        return self.placement_speed * ((cycle_s - self.checkpoint_s) / cycle_s if cycle_s else 1.0)

    def seconds_left(self, done: float) -> float:
        """Wall seconds of work from `done` (a fraction of its true work) to its end."""
        if self.curve is not None:
            return self.curve.seconds_to(done, 1.0) / self.speed
        return (1.0 - done) * self.runtime_s / self.speed

    def done_after(self, done: float, worked_s: float) -> float:
        """The fraction of its true work done after `worked_s` wall seconds of work from `done`."""
        if self.curve is not None:
            return self.curve.advance(done, worked_s * self.speed)
        return done + worked_s * self.speed / self.runtime_s


class SimulatedExecutor:
    """`truth`: how long a run truly takes on its placement and how it checkpoints (None: it lasts its
    walltime). A run the policy preempts keeps the work up to its last checkpoint (all of it with
    `keeps_all_work`, as a round-based policy preempts at the round's end), as the simulator's does."""

    poll_interval_s = 0.0
    name = "simulated"

    def __init__(
        self,
        clock: Callable[[], float],
        truth: Callable[[Run], TrueRun | None] | None = None,
        keeps_all_work: bool = False,
    ) -> None:
        self.clock = clock
        self.truth = truth
        self.keeps_all_work = keeps_all_work
        # told the wall seconds of work a stopped run lost since its last checkpoint (its next run
        # resumes from there, as a live runtime's restored step would show)
        self.on_lost_work: Callable[[Run, float, TrueRun], None] | None = None
        self._ends_s: dict[str, float] = {}
        self._cancelled: set[str] = set()
        self._progress_from_s: dict[str, tuple[float, TrueRun]] = {}
        self._done: dict[int, float] = {}  # per job: the fraction of its true work already saved

    def submit(self, run: Run) -> str:
        now_s = self.clock()
        true = self.truth(run) if self.truth else None
        if true is None:
            self._ends_s[run.key] = now_s + (run.spec.walltime_s or DEFAULT_RUNTIME_S)
            return run.key
        work_from_s = now_s + true.restart_overhead_s
        self._progress_from_s[run.key] = (work_from_s, true)
        self._ends_s[run.key] = work_from_s + true.seconds_left(self._done.get(run.job_id, 0.0))
        return run.key

    def next_end_s(self) -> float | None:
        """The earliest end still ahead of the clock (a replay's next event), None when none is."""
        now_s = self.clock()
        ahead = [end_s for key, end_s in self._ends_s.items() if end_s > now_s and key not in self._cancelled]
        return min(ahead, default=None)

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
        started = self._progress_from_s.pop(run.key, None)
        if started is not None and run.key not in self._cancelled:
            work_from_s, true = started
            worked_s = min(max(0.0, self.clock() - work_from_s), self._ends_s[run.key] - work_from_s)
            if true.checkpoint_cycle_s and not self.keeps_all_work:
                lost_s = worked_s % true.checkpoint_cycle_s
                worked_s -= lost_s
                if self.on_lost_work:
                    self.on_lost_work(run, lost_s, true)
            self._done[run.job_id] = true.done_after(self._done.get(run.job_id, 0.0), worked_s)
        self._cancelled.add(run.key)

    def logs(self, run: Run) -> str:
        end_s = self._ends_s.get(run.key)
        if end_s is None:
            return ""
        return f"simulated run of {run.spec.name} on {run.placement.nodes} node(s) of {run.placement.pool}\n"
