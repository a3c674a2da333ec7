"""Goodput-optimised allocation of elastic jobs, Sia's objective (Jayaram Subramanya et al., SOSP'23).

Every round (Sia's 60 s) the policy chooses one configuration (GPU type, GPUs) per job, or none:

- filter: the widths Sia's configs allow on a type (1, 2, 4, … one node, then whole nodes) within the
  job's bounds (`Elastic.min_gpus` … `gpus_max`, the app's largest batch, the type's pool); a rigid
  job has its one width per type;
- score: the job's predicted goodput there (`goodput.AppGoodput.predicted_goodput` at its current
  epoch; a rigid job's throughput), normalised by its smallest configuration, so every job's worst
  useful allocation is worth 1. A configuration other than the one it runs is discounted by Pollux's
  restart factor (age − restarts × restore) / (age + restore). The value of a configuration is
  λ − G^p with Sia's p = −0.5 and λ = 1.1: concave in G, so widening a job is worth less than
  admitting another one, and leaving a job out costs λ;
- bind: a greedy ascent on the sum of values. From nothing, repeatedly make the single change (admit,
  widen, shrink or move one job) with the best gain per GPU added that fits the free GPUs; stop when
  no change gains. Sia solves the same objective as an integer program; the greedy needs no solver.
  A job still restoring from its last move keeps its configuration (Sia's hard constraint).

It reads only the spec (bounds, app, restore time), profiled throughput, progress (the epoch a job
reports) and attained service; no run-time estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suanli.sched.goodput import app_goodput, epoch_of
from suanli.sched.job import JobState
from suanli.sched.policies.base import Hook, Policy, View

_NONE = -1


def sia_widths(capacity: int, per_node: int) -> list[int]:
    """Sia's configurations on a pool: powers of two up to one node, then whole nodes
    (`CONFIGS_4GPU` / `CONFIGS_8GPU` in the artifact's sia.py)."""
    widths, w = [], 1
    while w < per_node and w <= capacity:
        widths.append(w)
        w *= 2
    return widths + list(range(per_node, capacity + 1, per_node))


def restart_factor(age_s: float, restarts: int, restore_s: float) -> float:
    """Pollux's re-allocation factor (Qiao et al., OSDI'21 §4.1, as Sia's simulator applies it): the
    share of its life a job has not spent restoring, counting the restart being considered."""
    if age_s < restore_s:
        return 1.0
    return max(age_s - restarts * restore_s, 0.0) / (age_s + restore_s)


@dataclass
class ElasticGoodput(Policy):
    name = "elastic"
    hooks = frozenset({Hook.ALLOCATE})
    preemptive = True
    moves_running = True
    round_s: float | None = 60.0  # Sia's scheduling interval
    tick_on_events: bool = False
    fairness_p: float = -0.5  # Sia's `p`
    unallocated_penalty: float = 1.1  # Sia's `lambda_n`

    def order(self, view: View) -> list[JobState]:
        return view.active()

    def allocate(self, view: View) -> dict[str, tuple[str, int]]:
        configs = self._configs(view)
        states = view.active()
        if not states or not configs:
            return {}
        values = np.array([self._values(s, configs, view) for s in states])
        chosen = self._ascend(states, configs, values, view)
        return {s.job.job_id: configs[c] for s, c in zip(states, chosen, strict=True) if c != _NONE}

    def _configs(self, view: View) -> list[tuple[str, int]]:
        """Sia's ladder on every pool, plus each rigid job's own width where the ladder lacks it."""
        per_node: dict[str, int] = {}
        for node in view.cluster.nodes:
            per_node[node.accel_type] = max(per_node.get(node.accel_type, 0), node.slots)
        ladder = {(t, w) for t, n in view.capacity.items() for w in sia_widths(n, per_node.get(t, 1))}
        rigid = {
            (t, s.job.width_on(t))
            for s in view.active()
            if s.job.elastic is None
            for t in s.job.runtime_s
            if s.job.width_on(t) <= view.capacity.get(t, 0)
        }
        return sorted(ladder | rigid)

    def _goodputs(self, state: JobState, configs: list[tuple[str, int]]) -> np.ndarray:
        """Normalised goodput G per configuration (0: not allowed). An elastic job's is relative to
        its smallest configuration; a rigid job's is its throughput relative to its slowest type,
        times its width (Sia's `_compute_rigid_job_goodput_single`: the slowest type is worth the
        GPUs it holds)."""
        job = state.job
        out = np.zeros(len(configs))
        if job.elastic is None:
            slowest = min(job.rate(t) for t in job.runtime_s)
            for i, (t, w) in enumerate(configs):
                if t in job.runtime_s and w == job.width_on(t):
                    out[i] = w * job.rate(t) / slowest
            return out
        for i, (t, w) in enumerate(configs):
            if t not in job.runtime_s:
                continue
            app = app_goodput(job.elastic.app, t)
            if job.elastic.min_gpus <= w <= min(job.gpus_max or job.gpus, app.max_replicas()):
                out[i] = app.predicted_goodput(w, epoch_of(job, state.progress, t))
        allowed = out > 0
        return out / out[allowed].min() if allowed.any() else out

    def _values(self, state: JobState, configs: list[tuple[str, int]], view: View) -> np.ndarray:
        normalised = self._goodputs(state, configs)
        allowed = normalised > 0
        if not allowed.any():
            return np.full(len(configs), -np.inf)
        current = self._current(state, configs)
        if current != _NONE:
            age_s = view.now_s - state.job.submit_s
            factor = restart_factor(age_s, state.starts - 1, state.job.restart_overhead_s)
            keep = normalised[current]
            normalised *= factor
            normalised[current] = keep
        values = self.unallocated_penalty - np.power(np.maximum(normalised, 1e-9), self.fairness_p)
        return np.where(allowed, values, -np.inf)

    @staticmethod
    def _current(state: JobState, configs: list[tuple[str, int]]) -> int:
        if state.status != "running":
            return _NONE
        shape = (state.accel_type, state.job.width_on(state.accel_type))
        return configs.index(shape) if shape in configs else _NONE

    def _ascend(
        self, states: list[JobState], configs: list[tuple[str, int]], values: np.ndarray, view: View
    ) -> np.ndarray:
        """Greedy ascent: the best gain-per-added-GPU change that fits, until none gains."""
        types = sorted(view.capacity)
        type_of = np.array([types.index(t) for t, _ in configs])
        gpus = np.array([w for _, w in configs])
        free = np.array([view.capacity[t] for t in types])
        chosen = np.full(len(states), _NONE)
        locked = np.zeros(len(states), dtype=bool)
        for j, state in enumerate(states):  # still restoring from its last start: it stays
            current = self._current(state, configs)
            if current != _NONE and state.busy_from_s > view.now_s:
                chosen[j], locked[j] = current, True
                free[type_of[current]] -= gpus[current]
        rows = np.arange(len(states))
        for _ in range(len(states) * len(configs)):
            held = chosen != _NONE
            now_value = np.where(held, values[rows, np.maximum(chosen, 0)], 0.0)
            same_type = held[:, None] & (type_of[np.maximum(chosen, 0)][:, None] == type_of[None, :])
            added = gpus[None, :] - np.where(same_type, gpus[np.maximum(chosen, 0)][:, None], 0)
            fits = (added <= free[type_of][None, :]) & ~locked[:, None]
            gain = values - now_value[:, None]
            score = np.where(fits & (gain > 1e-9), gain / np.maximum(added, 1), -np.inf)
            best = np.unravel_index(np.argmax(score), score.shape)
            j, c = int(best[0]), int(best[1])
            if not np.isfinite(score[j, c]):
                break
            if chosen[j] != _NONE:
                free[type_of[chosen[j]]] += gpus[chosen[j]]
            free[type_of[c]] -= gpus[c]
            chosen[j] = c
        return chosen
