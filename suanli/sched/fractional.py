"""Fractional accelerators: MIG placement, the share of a GPU a sliced job holds, and the slowdown of
co-located jobs.

MIG geometry is data (`suanli/catalog/sharing.yaml`, from NVIDIA's MIG User Guide): a profile
occupies `memory_slices` consecutive memory slices starting at one of its `starts`, and two GPU
instances never overlap. Which GPU a slice goes to is `placement.find_slots`; whether it may share
that GPU at all (one sharing mode per GPU) is `ClusterState.bind`.
"""

from __future__ import annotations

import csv
import io
import math
from functools import cache

from suanli.spec.catalog import CATALOG
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError
from suanli.spec.job import Sharing
from suanli.spec.sharing import MIG_COMPUTE_SLICES, MigModel, MigProfile

FULL_MILLI = 1000


def mig_model(accel_type: str) -> MigModel:
    model = CATALOG.sharing(accel_type, field="sharing").mig
    if model is None:
        raise SpecError(f"sharing.mig_profile: {CATALOG.sharing(accel_type).refusal('mig')}")
    return model


def mig_profile(accel_type: str, name: str) -> MigProfile:
    model = mig_model(accel_type)
    profile = model.profile(name)
    if profile is None:
        known = ", ".join(p.name for p in model.profiles)
        raise SpecError(f"sharing.mig_profile: {name!r} is not a MIG profile of {accel_type}; one of {known}")
    return profile


def _fits(used: set[int], start: int, size: int) -> bool:
    return not used & set(range(start, start + size))


def mig_place(occupied: list[tuple[int, int]], profile: MigProfile, model: MigModel) -> int | None:
    """The start for `profile` next to the `occupied` (start, size) instances, or None if none fits.

    Of the free starts, the one that leaves the most room for what may come next: the most
    (profile, start) placements still open, each weighted by its memory slices, so a 1g goes to the
    end of the GPU and a later 4g (start 0 only) or 3g still fits. Lowest start on a tie.
    """
    used = {s for start, size in occupied for s in range(start, start + size)}
    best: tuple[int, int] | None = None
    for start in profile.starts:
        if not _fits(used, start, profile.memory_slices):
            continue
        after = used | set(range(start, start + profile.memory_slices))
        room = sum(
            p.memory_slices for p in model.profiles for s in p.starts if _fits(after, s, p.memory_slices)
        )
        if best is None or room > best[0]:
            best = (room, start)
    return None if best is None else best[1]


def share_milli(sharing: Sharing, accel_type: str) -> int:
    """How much of one accelerator (in 1/1000) a sharing request occupies.

    A MIG instance counts its compute slices rounded down (1g = 142), so the seven 1g, or 4g + 3g,
    that the geometry admits never add up past one GPU; the geometry, not this count, decides
    whether an instance fits. Shares (MPS, time-slicing) round up: they must never oversubscribe.
    """
    if sharing.mode == "exclusive":
        return FULL_MILLI
    if sharing.mode == "mig":
        profile = mig_profile(accel_type, sharing.mig_profile or "")
        return FULL_MILLI * profile.compute_slices // MIG_COMPUTE_SLICES
    fraction = max(sharing.memory_fraction or 0.0, sharing.core_fraction or 0.0)
    return max(1, math.ceil(FULL_MILLI * fraction))


LUCID_COLOCATION_CSV = "traces/lucid/data_colocate_info.csv"  # under datasets/


@cache
def _colocation_speeds() -> tuple[dict[tuple[str, str], float], float]:
    pairs: dict[tuple[str, str], list[float]] = {}
    with io.StringIO(read_text(LUCID_COLOCATION_CSV)) as handle:
        for row in csv.DictReader(handle):
            for me, other, speed in (("model1", "model2", "speed1"), ("model2", "model1", "speed2")):
                pairs.setdefault((row[me].lower(), row[other].lower()), []).append(float(row[speed]))
    means = {key: sum(v) / len(v) for key, v in pairs.items()}
    overall = sum(means.values()) / len(means)
    return means, overall


def colocated_speed(model: str, neighbour: str) -> float:
    """Normalised speed (1.0 = alone) of `model` sharing a GPU with `neighbour`, from Lucid's 1,388
    measured pairs (Hu et al., ASPLOS'23); the mean over all pairs when the pair was not measured."""
    means, overall = _colocation_speeds()
    return min(1.0, means.get((model.lower(), neighbour.lower()), overall))


def mean_colocated_speed() -> float:
    return min(1.0, _colocation_speeds()[1])


def shared_gpu_speeds(models_by_gpu: dict[tuple[int, int], list[tuple[str, str]]]) -> dict[str, float]:
    """Speed (1.0 = alone) of every job in `models_by_gpu` (GPU → [(job id, model)] on it).

    On a GPU shared with several neighbours a job's speed is the product of its pairwise Lucid
    speeds (our assumption: Lucid measured pairs only); a job spread over several GPUs runs at the
    speed of its slowest one, since its shares step together.
    """
    speeds: dict[str, float] = {}
    for jobs in models_by_gpu.values():
        for job_id, model in jobs:
            speed = math.prod(colocated_speed(model, other) for other_id, other in jobs if other_id != job_id)
            speeds[job_id] = min(speeds.get(job_id, 1.0), speed)
    return speeds
