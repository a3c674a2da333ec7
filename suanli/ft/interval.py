"""Checkpoint interval planning: how often to checkpoint, and what that buys.

Pure functions, seconds everywhere. Three models, each named after its paper:

- Young (1974), "A first order approximation to the optimum checkpoint interval":
  work interval ``sqrt(2 * stall * MTBF)``.
- Daly (2006), "A higher order estimate of the optimum checkpoint interval for restart dumps",
  FGCS 22(3): a higher-order interval, and the exact expected run time when failures are a
  Poisson process that may also strike during a checkpoint or a restart.
- Aupy, Robert, Vivien, Zaidouni (2012/2013), "Impact of fault prediction on checkpointing
  strategies" (INRIA RR-8023, arXiv 1207.6936): a predictor with recall r and precision p.
  Predicted failures are preceded by a proactive checkpoint, so only the unpredicted ones
  (rate (1 - r) / MTBF) lose work; every prediction, true or false, costs one proactive checkpoint.
  The first-order optimum becomes ``sqrt(2 * MTBF * stall / (1 - r))``.

"Stall" is the training time lost per checkpoint. With asynchronous checkpoints that is not only
the time `save()` blocks: the copy and the background persist slow the steps they overlap, and
that extra time counts too (`suanli.runtime.checkpointing` measures blocking + slowdown per save
and passes it here). "Restart" is everything from a failure until training
runs again: detection, rescheduling, process start, loading the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.optimize import brentq

from suanli.perf.checkpoint_interval import (
    MONTH_S,
    check_non_negative,
    check_positive,
    daly_interval_s,
    failures_per_gpu_s,
)
from suanli.spec.errors import SpecError

HOUR_S = 3600.0


def check_predictor(recall: float, precision: float) -> None:
    if not 0.0 <= recall < 1.0:
        raise SpecError(
            f"recall must be in [0, 1) (a perfect predictor needs no periodic checkpoint), got {recall!r}"
        )
    if not 0.0 < precision <= 1.0:
        raise SpecError(f"precision must be in (0, 1], got {precision!r}")


def job_mtbf_s(
    gpus: int, mtbf_per_gpu_h: float | None = None, failures_per_1k_gpu_month: float | None = None
) -> float:
    """Mean time between job-interrupting failures for a job spanning `gpus` GPUs.

    Independent failures add up: the job fails at the sum of the per-GPU rates. Give exactly one
    of `mtbf_per_gpu_h` or `failures_per_1k_gpu_month` (Llama 3's unit; 30-day months).
    """
    if gpus < 1:
        raise SpecError(f"gpus must be >= 1, got {gpus!r}")
    if (mtbf_per_gpu_h is None) == (failures_per_1k_gpu_month is None):
        raise SpecError("give exactly one of mtbf_per_gpu_h or failures_per_1k_gpu_month")
    if mtbf_per_gpu_h is not None:
        check_positive("mtbf_per_gpu_h", mtbf_per_gpu_h)
        return mtbf_per_gpu_h * HOUR_S / gpus
    assert failures_per_1k_gpu_month is not None
    check_positive("failures_per_1k_gpu_month", failures_per_1k_gpu_month)
    return 1.0 / (failures_per_gpu_s(failures_per_1k_gpu_month) * gpus)


def failures_per_1k_gpu_month(failures: int, gpus: int, period_days: float) -> float:
    """The failure rate in Llama 3's unit from a count over a period (30-day months)."""
    check_positive("period_days", period_days)
    return failures / (gpus / 1000.0) / (period_days * 24 * HOUR_S / MONTH_S)


def young_interval_s(stall_s: float, mtbf_s: float) -> float:
    """Young (1974): work time between checkpoints, sqrt(2 * stall * MTBF)."""
    check_non_negative("stall_s", stall_s)
    check_positive("mtbf_s", mtbf_s)
    return math.sqrt(2.0 * stall_s * mtbf_s)


def unpredicted_mtbf_s(mtbf_s: float, recall: float) -> float:
    """Mean time between the failures a predictor with this recall misses (Aupy et al.)."""
    check_positive("mtbf_s", mtbf_s)
    check_predictor(recall, 1.0)
    return mtbf_s / (1.0 - recall)


def aupy_interval_s(stall_s: float, mtbf_s: float, recall: float) -> float:
    """Aupy et al. (2013): first-order optimum with a predictor, sqrt(2 * MTBF * stall / (1 - r))."""
    return young_interval_s(stall_s, unpredicted_mtbf_s(mtbf_s, recall))


def optimal_interval_s(stall_s: float, mtbf_s: float, recall: float = 0.0, precision: float = 1.0) -> float:
    """The work time between periodic checkpoints the planner recommends.

    Daly's higher-order interval over the failures the predictor misses: with recall 0 this is
    Daly (2006); as stall/MTBF -> 0 it tends to Aupy et al.'s sqrt(2 * MTBF * stall / (1 - r)).
    Precision does not move the optimum (false alarms cost a proactive checkpoint each, whatever
    the period); it is validated here so that callers pass the predictor they will use.
    """
    check_predictor(recall, precision)
    return daly_interval_s(stall_s, unpredicted_mtbf_s(mtbf_s, recall))


def daly_ettr(interval_s: float, stall_s: float, mtbf_s: float, restart_s: float = 0.0) -> float:
    """Daly (2006), as a ratio: exact expected effective training time ratio.

    Failures are Poisson with mean gap `mtbf_s` and may strike during work, a checkpoint or a
    restart; a segment of `interval_s` work plus `stall_s` checkpoint takes, in expectation,
    M * exp(R/M) * (exp((tau + d)/M) - 1) of wall time.
    """
    check_non_negative("interval_s", interval_s)
    check_non_negative("stall_s", stall_s)
    check_positive("mtbf_s", mtbf_s)
    check_non_negative("restart_s", restart_s)
    if interval_s == 0.0:  # the limit of checkpointing continuously, for free when stall is 0
        return math.exp(-restart_s / mtbf_s) if stall_s == 0.0 else 0.0
    exponent = (interval_s + stall_s) / mtbf_s
    log_expm1 = (
        exponent + math.log1p(-math.exp(-exponent)) if exponent > 1.0 else math.log(math.expm1(exponent))
    )
    log_wall = math.log(mtbf_s) + restart_s / mtbf_s + log_expm1
    return math.exp(math.log(interval_s) - log_wall)


def expected_ettr(
    interval_s: float,
    stall_s: float,
    mtbf_s: float,
    restart_s: float = 0.0,
    recall: float = 0.0,
    precision: float = 1.0,
    proactive_stall_s: float | None = None,
) -> float:
    """Expected effective training time ratio (productive time / wall time) of periodic checkpoints.

    Without a predictor this is Daly's exact form. With one (Aupy et al.): predicted failures, at
    rate r / M, and false alarms, at rate r (1 - p) / (p M), each cost a proactive checkpoint
    (`proactive_stall_s`, default `stall_s`); predicted failures also cost a restart but lose no
    work. That overhead, a fraction r (R + C_p / p) / M of wall time, is taken first; the rest runs
    Daly's model against the unpredicted failures, mean gap M / (1 - r).
    """
    check_predictor(recall, precision)
    proactive_s = stall_s if proactive_stall_s is None else proactive_stall_s
    check_non_negative("proactive_stall_s", proactive_s)
    prediction_overhead = recall * (restart_s + proactive_s / precision) / mtbf_s
    unpredicted = daly_ettr(interval_s, stall_s, unpredicted_mtbf_s(mtbf_s, recall), restart_s)
    return max(0.0, 1.0 - prediction_overhead) * unpredicted


def should_checkpoint_now(
    failure_probability: float, time_since_checkpoint_s: float, proactive_stall_s: float
) -> bool:
    """Take a proactive checkpoint now? (Aupy et al. 2013, when to trust a prediction.)

    A checkpoint now costs `proactive_stall_s`; skipping it loses, in expectation,
    `failure_probability * time_since_checkpoint_s` of work. Aupy et al.'s optimal policy comes
    down to this threshold: trust a prediction of precision p only once more than C_p / p has
    passed since the last checkpoint. `failure_probability` is the predictor's calibrated risk that
    this node fails before the next periodic checkpoint (its precision at that score).
    """
    if not 0.0 <= failure_probability <= 1.0:
        raise SpecError(f"failure_probability must be in [0, 1], got {failure_probability!r}")
    check_non_negative("time_since_checkpoint_s", time_since_checkpoint_s)
    check_non_negative("proactive_stall_s", proactive_stall_s)
    return failure_probability * time_since_checkpoint_s > proactive_stall_s


def best_ettr(
    stall_s: float,
    mtbf_s: float,
    restart_s: float = 0.0,
    recall: float = 0.0,
    precision: float = 1.0,
    proactive_stall_s: float | None = None,
) -> float:
    """Expected ETTR when checkpointing at `optimal_interval_s`."""
    interval_s = optimal_interval_s(stall_s, mtbf_s, recall, precision)
    return expected_ettr(interval_s, stall_s, mtbf_s, restart_s, recall, precision, proactive_stall_s)


def _largest_meeting(target_ettr: float, ettr_at: Callable[[float], float], upper: float) -> float | None:
    """The largest x in [0, upper] with ettr_at(x) >= target, for ettr_at decreasing in x."""
    if not 0.0 < target_ettr < 1.0:
        raise SpecError(f"target ETTR must be in (0, 1), got {target_ettr!r}")
    if ettr_at(0.0) < target_ettr:
        return None
    if ettr_at(upper) >= target_ettr:
        return upper
    return brentq(lambda x: ettr_at(x) - target_ettr, 0.0, upper, xtol=1e-6, rtol=1e-9)


def max_restart_s_for_ettr(
    target_ettr: float,
    stall_s: float,
    mtbf_s: float,
    recall: float = 0.0,
    precision: float = 1.0,
    proactive_stall_s: float | None = None,
) -> float | None:
    """Longest restart that still reaches `target_ettr` at the optimal interval; None if none does.

    Without a predictor this is closed-form in Daly's model: M * ln(ETTR(R=0) / target).
    """
    return _largest_meeting(
        target_ettr,
        lambda restart_s: best_ettr(stall_s, mtbf_s, restart_s, recall, precision, proactive_stall_s),
        mtbf_s,
    )


def max_stall_s_for_ettr(
    target_ettr: float,
    restart_s: float,
    mtbf_s: float,
    recall: float = 0.0,
    precision: float = 1.0,
    proactive_stall_s: float | None = None,
) -> float | None:
    """Longest checkpoint stall that still reaches `target_ettr` at the optimal interval."""
    return _largest_meeting(
        target_ettr,
        lambda stall_s: best_ettr(stall_s, mtbf_s, restart_s, recall, precision, proactive_stall_s),
        mtbf_s,
    )
