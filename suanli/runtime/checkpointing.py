"""The loop's side of checkpointing: what state to save, when, and where to find the node agent.

Storage (shared-memory tier held by the node's agent, peer replica, DCP on disk) belongs to
`suanli.ft.checkpoint`; the interval comes from `suanli.ft.interval` (Daly 2006) using the stall this
run measures, unless a fixed `every_steps` is configured. The launcher starts one agent per node
before the ranks and names its folder in `AGENT_DIR_ENV`, so a restarted rank finds its last
snapshot in memory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from suanli.ft.checkpoint.engine import CheckpointEngine
from suanli.ft.checkpoint.state import ModelState, OptimizerState
from suanli.ft.interval import optimal_interval_s
from suanli.runtime.config import CheckpointConfig

AGENT_DIR_ENV = "SUANLI_CHECKPOINT_AGENT_DIR"


def agent_dir(config: CheckpointConfig) -> Path:
    """Where the node agents of this run announce themselves."""
    return Path(config.folder) / "agents"


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
    ) -> None:
        self.config, self.optimizer, self.device = config, optimizer, device
        self.distributed = world_size > 1
        agents = os.environ.get(AGENT_DIR_ENV)
        self.engine = CheckpointEngine(
            config.folder,
            rank,
            world_size,
            node_id=rank // local_world_size,
            nodes=max(1, world_size // local_world_size),
            agent_dir=agents or None,
            keep_last=config.keep_last,
            disk_every=config.disk_every,
        )
        self.state = {"model": ModelState(model), "optimizer": OptimizerState(model, optimizer)}
        self.interval_steps = config.every_steps
        self.last_saved_step = 0

    @property
    def restored_tier(self) -> str | None:
        return self.engine.restored.tier if self.engine.restored else None

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

    def _due(self, step: int, total_steps: int) -> bool:
        if step == total_steps or self.interval_steps is None:  # no stall measured yet: save to measure it
            return True
        return step - self.last_saved_step >= self.interval_steps

    def after_step(self, step: int, total_steps: int, step_time_s: float) -> float:
        """Save if the interval says so; the seconds the loop was blocked (the checkpoint stall)."""
        if not self._due(step, total_steps):
            return 0.0
        start = time.perf_counter()
        self.engine.save(step, self.state)
        stall_s = time.perf_counter() - start
        self.last_saved_step = step
        if self.config.every_steps is None:
            self.interval_steps = self._planned_interval_steps(stall_s, step_time_s)
        return stall_s

    def _planned_interval_steps(self, stall_s: float, step_time_s: float) -> int:
        """Daly's optimum in steps; every rank takes the slowest rank's figures, so all agree."""
        figures = torch.tensor([stall_s, step_time_s], dtype=torch.float64, device=self.device)
        if self.distributed:
            dist.all_reduce(figures, op=dist.ReduceOp.MAX)
        stall_s, step_time_s = figures.tolist()
        interval_s = optimal_interval_s(stall_s, self.config.mtbf_s)
        return max(1, round(interval_s / max(step_time_s, 1e-9)))

    def close(self) -> None:
        self.engine.close()
