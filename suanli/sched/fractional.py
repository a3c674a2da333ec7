"""Fractional accelerators: MIG geometry, memory/core shares, the settings a launcher applies, and
the slowdown of co-located jobs.

MIG geometry follows NVIDIA's MIG User Guide, "Supported MIG Profiles" (A100/H100): a GPU has 8
memory slices and 7 compute slices; each GPU-instance profile occupies `size` memory slices starting
at one of a fixed set of `starts`, and two instances may not overlap. A100-40GB names (1g.5gb …)
and 80 GB names (1g.10gb …, A100-80GB and H100-80GB) share the same geometry.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import cache

from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError
from suanli.spec.job import Sharing

MEMORY_SLICES = 8
COMPUTE_SLICES = 7
FULL_MILLI = 1000


@dataclass(frozen=True)
class MigProfile:
    name: str
    compute_slices: int
    size: int  # memory slices
    starts: tuple[int, ...]


def _profiles(gb_per_slice: int) -> dict[str, MigProfile]:
    rows = [  # (compute slices, memory slices, allowed starts) — MIG User Guide placement diagram
        (1, 1, (0, 1, 2, 3, 4, 5, 6)),
        (1, 2, (0, 2, 4, 6)),
        (2, 2, (0, 2, 4)),
        (3, 4, (0, 4)),
        (4, 4, (0,)),
        (7, 8, (0,)),
    ]
    out = {}
    for compute, size, starts in rows:
        name = f"{compute}g.{size * gb_per_slice}gb"
        out[name] = MigProfile(name, compute, size, starts)
    return out


MIG_PROFILES: dict[str, dict[str, MigProfile]] = {
    "a100-sxm-40gb": _profiles(5),
    "a100-sxm-80gb": _profiles(10),
    "h100-sxm": _profiles(10),
}


def mig_profile(accel_type: str, name: str) -> MigProfile:
    table = MIG_PROFILES.get(accel_type)
    if table is None:
        raise SpecError(f"sharing.mig_profile: {accel_type} does not support MIG (A100/H100 only)")
    if name not in table:
        raise SpecError(
            f"sharing.mig_profile: {name!r} is not a {accel_type} profile; one of {sorted(table)}"
        )
    return table[name]


def mig_place(occupied: list[tuple[int, int]], profile: MigProfile) -> int | None:
    """First start where `profile` fits next to the `occupied` (start, size) instances, or None."""
    used = {s for start, size in occupied for s in range(start, start + size)}
    for start in profile.starts:
        if not used & set(range(start, start + profile.size)):
            return start
    return None


def share_milli(sharing: Sharing, accel_type: str) -> int:
    """How much of one accelerator (in 1/1000) a sharing request occupies."""
    if sharing.mode == "exclusive":
        return FULL_MILLI
    if sharing.mode == "mig":
        profile = mig_profile(accel_type, sharing.mig_profile or "")
        return math.ceil(FULL_MILLI * profile.compute_slices / COMPUTE_SLICES)
    fraction = max(sharing.memory_fraction or 0.0, sharing.core_fraction or 0.0)
    return max(1, math.ceil(FULL_MILLI * fraction))


def launcher_settings(
    sharing: Sharing, accel_type: str, gpu_index: int, memory_gb: float, mig_start: int | None = None
) -> dict[str, str]:
    """Environment a launcher sets for one fractional process.

    MIG: the device is addressed as `MIG-<gpu>/<gi start>/0` (GPU instance by placement, compute
    instance 0). Shares: CUDA MPS's `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` caps SMs; HAMi-core's
    `CUDA_DEVICE_MEMORY_LIMIT` / `CUDA_DEVICE_SM_LIMIT` enforce limits without MPS; and PyTorch's
    `torch.cuda.set_per_process_memory_fraction` is passed as `SUANLI_TORCH_MEMORY_FRACTION`.
    """
    if sharing.mode == "exclusive":
        return {"CUDA_VISIBLE_DEVICES": str(gpu_index)}
    if sharing.mode == "mig":
        profile = mig_profile(accel_type, sharing.mig_profile or "")
        start = mig_start if mig_start is not None else profile.starts[0]
        return {
            "CUDA_VISIBLE_DEVICES": f"MIG-{gpu_index}/{start}/0",
            "SUANLI_MIG_PROFILE": profile.name,
        }
    core = sharing.core_fraction or sharing.memory_fraction or 1.0
    memory = sharing.memory_fraction or sharing.core_fraction or 1.0
    return {
        "CUDA_VISIBLE_DEVICES": str(gpu_index),
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(max(1, round(core * 100))),
        "CUDA_DEVICE_MEMORY_LIMIT": f"{max(1, math.floor(memory * memory_gb * 1024))}m",
        "CUDA_DEVICE_SM_LIMIT": str(max(1, round(core * 100))),
        "SUANLI_TORCH_MEMORY_FRACTION": f"{memory:.3f}",
    }


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
