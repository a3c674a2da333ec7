"""The loop's side of checkpointing: what state to save, when, how, and what each save cost training.

Storage (shared-memory tier held by the node's agent, peer replica, DCP on disk) belongs to
`suanli.ft.checkpoint`; the state is written in torchtitan's layout (`TorchtitanState`). The
launcher starts and supervises one agent per node and names its folder in `AGENT_DIR_ENV`, so a
restarted rank finds its last snapshot in memory.

A save costs training more than the time `save()` blocks: its copy (when overlapped with the next
forward/backward) and its background persist compete with the steps that follow. **Time lost per
save** = blocking (the save call, the wait for the copy before the optimizer step, the wait for
the previous save) + the extra time of every step that ran while the save was in flight, over the
median of recent undisturbed steps. That figure drives the choice between an overlapped and an
in-loop copy, the interval (Daly 2006, `suanli.ft.interval`) and the `checkpoint_stall_s` badput.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from suanli.ft.checkpoint.agent import AGENT_DIR_ENV
from suanli.ft.checkpoint.engine import CheckpointEngine, Restored
from suanli.ft.checkpoint.torchtitan import TorchtitanState
from suanli.ft.interval import optimal_interval_s
from suanli.runtime.config import CheckpointConfig

BASELINE_WINDOW = 20  # undisturbed steps the baseline step time is the median of
COST_WINDOW = 5  # saves per copy mode whose mean time lost decides the next choice
RETRY_EVERY = 8  # on CPU, try the mode that lost the comparison again after this many saves


@dataclass
class SaveCost:
    """What one save cost training (seconds)."""

    step: int
    overlap: bool
    blocking_s: float = 0.0
    slowdown_s: float = 0.0

    @property
    def lost_s(self) -> float:
        return self.blocking_s + self.slowdown_s


@dataclass
class CopyModeChoice:
    """Per save, copy in the background during the next forward/backward, or in the loop.

    On an accelerator the copy runs on its own stream and DMA engine: always overlap. On a CPU the
    background copy takes cores from the compute it overlaps, so the measured time lost per save
    decides: each mode is tried, the cheaper one is used, and the other is tried again every
    `RETRY_EVERY` saves, so a change in load is noticed.
    """

    always_overlap: bool
    lost_s: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    choices: int = 0

    def next(self) -> bool:
        if self.always_overlap:
            return True
        self.choices += 1
        untried = [mode for mode in (False, True) if not self.lost_s[mode]]
        if untried:
            return untried[0]
        best = min((False, True), key=lambda mode: statistics.fmean(self.lost_s[mode][-COST_WINDOW:]))
        return (not best) if self.choices % RETRY_EVERY == 0 else best

    def record(self, cost: SaveCost) -> None:
        self.lost_s[cost.overlap].append(cost.lost_s)


@dataclass(frozen=True)
class StepCost:
    """Checkpointing's share of one step: time blocked, extra time from a save in flight, a save taken."""

    blocking_s: float
    slowdown_s: float
    saved: bool
    in_flight: bool = False


class Checkpointer:
    def __init__(
        self,
        config: CheckpointConfig,
        rank: int,
        world_size: int,
        local_world_size: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        tokens_per_step: int,
    ) -> None:
        self.config, self.optimizer, self.device = config, optimizer, device
        self.distributed = world_size > 1
        self.engine = CheckpointEngine(
            config.folder,
            rank,
            world_size,
            node_id=rank // local_world_size,
            nodes=max(1, world_size // local_world_size),
            agent_dir=os.environ.get(AGENT_DIR_ENV) or None,
            keep_last=config.keep_last,
            disk_every=config.disk_every,
        )
        self.state = TorchtitanState(model, optimizer, tokens_per_step)
        self.interval_steps = config.every_steps
        self.last_saved_step = 0
        self.copy_mode = CopyModeChoice(always_overlap=device.type != "cpu")
        self.costs: list[SaveCost] = []  # finished saves, oldest first
        self._open: SaveCost | None = None  # the save whose copy or persist may still be running
        self._undisturbed_s: list[float] = []
        self._disturbed = False
        self._blocked_s = 0.0

    @property
    def restored(self) -> Restored | None:
        return self.engine.restored

    def restore(self) -> int | None:
        """Load the newest checkpoint every rank can use; the step it was taken at, or None."""
        step = self.engine.load(self.state)
        if step is None:
            # Reading the optimizer's state dict may have run one zero-lr step to create Adam's
            # moments; a fresh run must not keep that step count, or its bias correction would differ.
            self.optimizer.state.clear()
            return None
        self.last_saved_step = step
        return step

    def step_started(self) -> None:
        """Note whether a save is still in flight; all ranks agree, so they account and save alike."""
        self._blocked_s = 0.0
        self._disturbed = False
        if self._open is None:
            return
        busy = torch.tensor([float(self.engine.busy())], device=self.device)
        if self.distributed:
            dist.all_reduce(busy, op=dist.ReduceOp.MAX)
        self._disturbed = bool(busy.item())

    def before_update(self) -> float:
        """Wait for the last save's copy before the optimizer changes the parameters; seconds waited."""
        waited_s = self.engine.wait_for_snapshot()
        self._blocked_s += waited_s
        if self._open is not None:
            self._open.blocking_s += waited_s
        return waited_s

    def step_finished(self, step: int, total_steps: int, compute_s: float) -> StepCost:
        """Account this step (its compute excludes blocking and data waits) and save if due."""
        slowdown_s = 0.0
        if self._disturbed:
            baseline_s = self._baseline_s()
            slowdown_s = max(0.0, compute_s - baseline_s) if baseline_s is not None else 0.0
            assert self._open is not None  # step_started marks a step disturbed only while a save is open
            self._open.slowdown_s += slowdown_s
        else:
            self._undisturbed_s = [*self._undisturbed_s, compute_s][-BASELINE_WINDOW - 1 :]
            self._finish_open()
        saved = self._due(step, total_steps)
        if saved:
            self._save(step)
        return StepCost(self._blocked_s, slowdown_s, saved, self._disturbed)

    def _baseline_s(self) -> float | None:
        """Median undisturbed step; the attempt's first step (warm-up) only if there is no other."""
        steps = self._undisturbed_s[1:] or self._undisturbed_s
        return statistics.median(steps) if steps else None

    def _due(self, step: int, total_steps: int) -> bool:
        if step == total_steps:
            return True
        if self.interval_steps is None:  # no cost measured yet: save once to measure it
            return self._open is None and not self.costs
        return step - self.last_saved_step >= self.interval_steps

    def _save(self, step: int) -> None:
        start = time.perf_counter()
        self.engine.wait()  # blocks only if the previous save is slower to persist than the interval
        waited_s = time.perf_counter() - start
        if self._open is not None:
            self._open.blocking_s += waited_s
            self._finish_open()
        overlap = self.copy_mode.next()
        self.state.step = step
        start = time.perf_counter()
        self.engine.save(step, self.state, overlap=overlap)
        blocking_s = time.perf_counter() - start
        self._blocked_s += waited_s + blocking_s
        self._open = SaveCost(step, overlap, blocking_s)
        self.last_saved_step = step

    def _finish_open(self, plan: bool = True) -> None:
        if self._open is None:
            return
        cost, self._open = self._open, None
        self.costs.append(cost)
        self.copy_mode.record(cost)
        if plan and self.config.every_steps is None:
            self.interval_steps = self._planned_interval_steps(cost.lost_s)

    def _planned_interval_steps(self, lost_s: float) -> int:
        """Daly's optimum in steps for the measured time lost per save; all ranks take the slowest's."""
        step_s = self._baseline_s() or 0.0
        figures = torch.tensor([lost_s, step_s], dtype=torch.float64, device=self.device)
        if self.distributed:
            dist.all_reduce(figures, op=dist.ReduceOp.MAX)
        lost_s, step_s = figures.tolist()
        interval_s = optimal_interval_s(lost_s, self.config.mtbf_s)
        return max(1, round(interval_s / max(step_s, 1e-9)))

    def close(self) -> None:
        self.engine.close()
        self._finish_open(plan=False)
