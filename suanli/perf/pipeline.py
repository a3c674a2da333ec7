"""Pipeline parallelism: splitting layers over stages, and the time of a 1F1B or interleaved
schedule with possibly uneven stages.

1F1B (Narayanan et al. 2021, sec. 2.2.1): with m micro-batches and p stages the step takes
(m + p − 1) slots of the slowest stage; the bubble is (p − 1) slots. Interleaving v virtual stages
per rank shrinks the bubble to (p − 1)/v slots (sec. 2.2.2). With uneven stages the steady state
runs at the slowest stage and the fill/drain costs the other stages' time once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def split_layers(
    n_layers: int, stage_speeds: Sequence[float], extra_cost: Sequence[float] | None = None
) -> list[int]:
    """Layers per stage so that the slowest stage is as fast as possible.

    `stage_speeds` are relative speeds (layers per unit time); `extra_cost` is fixed work a stage
    has besides its layers (embedding on the first, LM head on the last), in layer units at speed
    1. Layers not divisible by the stage count, and heterogeneous stages, come out uneven. Every
    stage gets at least one layer."""
    stages = len(stage_speeds)
    if stages > n_layers:
        raise ValueError(f"{stages} pipeline stages need at least {stages} layers, the model has {n_layers}")
    extra = list(extra_cost) if extra_cost is not None else [0.0] * stages

    def capacity(limit: float) -> list[int]:
        return [
            max(1, math.floor(limit * speed - cost + 1e-9))
            for speed, cost in zip(stage_speeds, extra, strict=True)
        ]

    if len(set(stage_speeds)) == 1:  # equal stages: step the finishing time a layer at a time
        high = math.floor((n_layers + sum(extra)) / stages) / stage_speeds[0]
        while sum(capacity(high)) < n_layers:
            high += 1 / stage_speeds[0]
    else:
        low, high = (
            0.0,
            max((n_layers + cost) / speed for speed, cost in zip(stage_speeds, extra, strict=True)),
        )
        for _ in range(24):  # bisection on the finishing time of the slowest stage
            middle = (low + high) / 2
            if sum(capacity(middle)) >= n_layers:
                high = middle
            else:
                low = middle
    counts = capacity(high)
    surplus = sum(counts) - n_layers
    if surplus > 0:  # hand back surplus layers from the stages that finish last
        finish = sorted(range(stages), key=lambda i: -(extra[i] + counts[i]) / stage_speeds[i])
        for i in finish:
            if surplus == 0:
                break
            give = min(surplus, counts[i] - 1, 1)
            counts[i] -= give
            surplus -= give
        while surplus > 0:  # rare: more than one layer per stage to hand back
            i = max(
                range(stages),
                key=lambda j: (extra[j] + counts[j]) / stage_speeds[j] if counts[j] > 1 else -1.0,
            )
            counts[i] -= 1
            surplus -= 1
    return counts


def stage_layer_indices(counts: Sequence[int]) -> list[list[int]]:
    """Contiguous layer indices of each stage."""
    indices, start = [], 0
    for count in counts:
        indices.append(list(range(start, start + count)))
        start += count
    return indices


@dataclass(frozen=True)
class PipelineTime:
    busy_s: float  # micro-batches × the slowest stage's slot
    bubble_s: float  # fill and drain


def pipeline_time(stage_slot_s: Sequence[float], n_micro: int, vpp: int = 1) -> PipelineTime:
    """Time of one step's forward/backward work given each stage's time per micro-batch (fwd+bwd).

    Steady state runs at the slowest stage; fill and drain cost every other stage's slot once,
    divided by the interleaving degree."""
    slowest = max(stage_slot_s)
    fill_drain = (sum(stage_slot_s) - slowest) / vpp
    return PipelineTime(busy_s=n_micro * slowest, bubble_s=fill_drain)


def bubble_fraction(pp: int, n_micro: int, vpp: int = 1) -> float:
    """Narayanan et al. 2021, eq. (1) and sec. 2.2.2: bubble time / ideal time = (p − 1)/(v·m)."""
    return (pp - 1) / (vpp * n_micro)
