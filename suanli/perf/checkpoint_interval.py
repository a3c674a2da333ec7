"""The checkpoint interval a job plans: Daly's optimum, with the input checks its callers share.

One home below both users: `suanli.ft.interval` (the fault-tolerance planner, layer ft) and the
scheduler's simulator (layer sched), which charges a preempted or failed job the work since its
last checkpoint at this interval when the job's spec names none.
"""

from __future__ import annotations

import math

from suanli.spec.errors import SpecError

# Llama 3 reports failures per 1,000 GPUs per 30-day month: 419 interruptions in 54 days on
# 16,384 GPUs gives its published 14.2 only with 30-day months (Dubey et al. 2024, sec. 3.3.4).
MONTH_S = 30 * 24 * 3600.0

# The job-level mean time between failures a job plans with when nothing declares a failure rate:
# the runtime's checkpoint planner default (`CheckpointConfig.mtbf_s`) and the simulator's.
DEFAULT_JOB_MTBF_S = 24 * 3600.0


def failures_per_gpu_s(failures_per_1k_gpu_month: float) -> float:
    """A failure rate in Llama 3's unit (failures per 1,000 GPUs per 30-day month) per GPU-second."""
    return failures_per_1k_gpu_month / 1000.0 / MONTH_S


def interruption_mtbf_s(failures_per_gpu_s: float, gpus: int) -> float:
    """The mean time between interruptions a job of `gpus` plans its checkpoints for: the failures of
    its width at the cluster's rate plus the other interruptions a shared cluster brings (preemptions,
    resizes), one per `DEFAULT_JOB_MTBF_S`. Failures alone at Llama 3's rate would put a 16-GPU job's
    saves ~10 h apart, so that every preemption lost hours. No declared rate: `DEFAULT_JOB_MTBF_S`."""
    rate_per_s = failures_per_gpu_s * max(1, gpus)
    if not rate_per_s:
        return DEFAULT_JOB_MTBF_S
    return 1.0 / (rate_per_s + 1.0 / DEFAULT_JOB_MTBF_S)


def check_positive(name: str, value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise SpecError(f"{name} must be a positive finite number, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0 or math.isinf(value):
        raise SpecError(f"{name} must be >= 0 and finite, got {value!r}")


def daly_interval_s(stall_s: float, mtbf_s: float) -> float:
    """Daly (2006), "A higher order estimate of the optimum checkpoint interval for restart dumps",
    FGCS 22(3): the optimum work time between checkpoints,

    sqrt(2 d M) * [1 + (1/3) sqrt(d / 2M) + (1/9) (d / 2M)] - d for d < 2M, else M.
    """
    check_non_negative("stall_s", stall_s)
    check_positive("mtbf_s", mtbf_s)
    if stall_s >= 2.0 * mtbf_s:
        return mtbf_s
    ratio = stall_s / (2.0 * mtbf_s)
    return math.sqrt(2.0 * stall_s * mtbf_s) * (1.0 + math.sqrt(ratio) / 3.0 + ratio / 9.0) - stall_s
