"""What a scheduler may believe about how long a job runs, and how a simulation hides the truth.

A live scheduler never knows a job's true duration. It knows what the job declares (training work
such as `total_tokens` or `steps`, turned into time by the planner's predicted throughput per
accelerator type; a walltime limit for an HPC job), the service each job has attained, and how past
jobs of the same queue compared with what they declared. `SchedJob.runtime_s` holds exactly that
prediction. In simulation `declare` builds those predictions from the trace: declared work is the
true work times a per-job lognormal error, and the true work stays with the simulator's executor.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike

from suanli.sched.job import JobState, SchedJob
from suanli.spec.errors import SpecError

Knowledge = Literal["declared", "none"]
KNOWLEDGE: tuple[Knowledge, ...] = ("declared", "none")


def declare(
    jobs: list[SchedJob], sigma: float, knowledge: Knowledge, seed: int
) -> tuple[list[SchedJob], dict[str, float]]:
    """The jobs as a live system would receive them, and each one's true work in units of what it
    declared (progress the scheduler counts; the job ends when its progress reaches this).

    `declared`: a training job declares its true work times exp(N(0, σ²)) (seeded per run); an HPC
    job with a walltime limit declares that limit. `none`: nothing is declared; `runtime_s` keeps only
    the relative cost per accelerator type (the profiled throughput ratio), the fastest at 1.0."""
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise SpecError(f"--estimate-error: must be a finite number >= 0, got {sigma}")
    if knowledge not in KNOWLEDGE:
        raise SpecError(f"--runtime-knowledge: must be one of {', '.join(KNOWLEDGE)}, got {knowledge!r}")
    rng = random.Random(seed)
    submitted, work = [], {}
    for job in jobs:
        best_s = min(job.runtime_s.values())
        if knowledge == "none":
            declared = {t: r / best_s for t, r in job.runtime_s.items()}
            submitted.append(replace(job, runtime_s=declared, estimate_s=None, declared=False))
            work[job.job_id] = best_s
        elif job.kind == "hpc" and job.estimate_s is not None:
            scale = job.estimate_s / best_s
            submitted.append(replace(job, runtime_s={t: r * scale for t, r in job.runtime_s.items()}))
            work[job.job_id] = 1.0 / scale
        else:
            error = math.exp(rng.gauss(0.0, sigma)) if sigma > 0 else 1.0
            submitted.append(replace(job, runtime_s={t: r * error for t, r in job.runtime_s.items()}))
            work[job.job_id] = 1.0 / error
    return submitted, work


class Estimator(Protocol):
    """The one source of remaining-time estimates every policy reads."""

    def remaining_s(self, state: JobState, accel_type: str) -> float:
        """Expected seconds left for the job if it ran on `accel_type` from now on."""

    def observe(self, state: JobState) -> None:
        """A job finished: learn how its actual work compared with what it declared."""


@dataclass
class HistoryEstimator:
    """Declared work ÷ predicted throughput, corrected by the queue's history; attained service for
    a job that declares nothing.

    - Declared: total = declared × the median actual/declared ratio of the last `history` finished
      jobs of its queue (1 before `min_history` have). Sites correct walltime limits this way
      (Tsafrir, Etsion & Feitelson, TPDS 2007: a user's recent jobs predict the next far better than
      the user's limit). Past that total the estimate keeps `overrun_fraction` of the work done.
    - Declared, of an application (`job.app`) with a finished job: the declaration is a noisy
      measurement of the work, and the application's past jobs are a prior on it, so the total is
      the precision-weighted mean of the two in log space (a normal-normal posterior, as 3Sigma
      predicts a job's run time from the history of similar jobs; Park et al., EuroSys'18). The
      declaration's precision is 1 / the variance of the queue's log actual/declared ratios; the
      prior's is 1 / (the within-application variance of log actual GPU-seconds on the fastest type,
      pooled over applications once it has `min_history` degrees of freedom, × (1 + 1/jobs)); each
      standard deviation at least `min_log_sd`. Where an application's jobs vary more than
      declarations err, the declaration wins, and the reverse.
    - Nothing declared: run times are heavy-tailed, so the expected time left grows with the time
      already run (Harchol-Balter & Downey, SIGMETRICS'96). As Tiresias' discretised LAS does (Gu et
      al., NSDI'19), the work done puts the job in a class whose expected total is the next rung
      of a ladder `class_base_s` × `class_factor`^k (1 h, 16 h, 256 h: Tiresias' boundary is at 16
      GPU-hours; factor 16 was picked over 4 on Sia philly 1–6 only); jobs in one class keep their
      order, and a job moves down only when it crosses a rung, so a ticked policy does not reshuffle
      them.
    """

    history: int = 50
    min_history: int = 5
    overrun_fraction: float = 0.25
    class_base_s: float = 3600.0
    class_factor: float = 16.0
    min_log_sd: float = 0.1
    _ratios: dict[str, deque[float]] = field(default_factory=dict)
    _median: dict[str, float] = field(default_factory=dict)
    _error_precision: dict[str, float] = field(default_factory=dict)  # queue → 1 / var(log ratio)
    _app_log_gpu_s: dict[str, deque[float]] = field(default_factory=dict)
    _app_mean: dict[str, float] = field(default_factory=dict)
    _app_spread: dict[str, float] = field(default_factory=dict)  # app → squared deviations of its logs
    _spread: float = 0.0  # their sum over the applications
    _spread_dof: int = 0  # its degrees of freedom: Σ (jobs − 1) over the applications

    def ratio(self, queue: str) -> float:
        """The queue's median actual/declared ratio (1.0 before `min_history` jobs ended)."""
        return self._median.get(queue, 1.0)

    def error_precision(self, queue: str) -> float:
        """1 / the variance of the queue's log actual/declared ratios (0: not yet known)."""
        return self._error_precision.get(queue, 0.0)

    def app_prior(self, app: str) -> tuple[float, float]:
        """The predictive mean and precision of the next job's log actual GPU-seconds on its fastest
        type, from its application's past jobs: their mean, and the within-application variance pooled
        over every application times (1 + 1/jobs) (precision 0: not yet known)."""
        used = self._app_log_gpu_s.get(app)
        if not used or self._spread_dof < self.min_history:
            return 0.0, 0.0
        variance = max(self.min_log_sd**2, self._spread / self._spread_dof)
        return self._app_mean[app], 1 / (variance * (1 + 1 / len(used)))

    def total(self, job: SchedJob) -> float:
        """The job's expected total work in units of its declaration."""
        mean, precision = self.app_prior(job.app)
        if not precision:
            return self.ratio(job.queue)
        return float(
            posterior_ratio(
                _log_declared_gpu_s(job),
                self.ratio(job.queue),
                self.error_precision(job.queue),
                mean,
                precision,
            )
        )

    def declared_left(
        self, declared: np.ndarray, queues: Iterable[str], apps: Iterable[str], progress: np.ndarray
    ) -> np.ndarray:
        """`remaining_s` ÷ the run time of many declared jobs at once (the same value, bit for bit):
        `declared` has a row per job, its `declaration_row` (names in `queues` and `apps` in code
        order)."""
        ratio = np.array([self.ratio(q) for q in queues])
        error_precision = np.array([self.error_precision(q) for q in queues])
        mean, precision = np.array([self.app_prior(a) for a in apps]).reshape(-1, 2).T
        queue, app = declared[:, 1].astype(np.intp), declared[:, 2].astype(np.intp)
        total = posterior_ratio(
            declared[:, 0], ratio[queue], error_precision[queue], mean[app], precision[app]
        )
        return np.maximum(total - progress, self.overrun_fraction * progress)

    def remaining_s(self, state: JobState, accel_type: str) -> float:
        job = state.job
        if not job.declared:
            rung = self.class_base_s
            while rung <= state.progress:
                rung *= self.class_factor
            return (rung - state.progress) * job.runtime_s[accel_type]
        total = self.total(job)
        left = max(total - state.progress, self.overrun_fraction * state.progress)
        return left * job.runtime_s[accel_type]

    def observe(self, state: JobState) -> None:
        job = state.job
        if not job.declared:
            return
        floor = self.min_log_sd**2
        ratios = self._ratios.setdefault(job.queue, deque(maxlen=self.history))
        ratios.append(state.progress)
        if len(ratios) >= self.min_history:
            self._median[job.queue] = statistics.median(ratios)
            self._error_precision[job.queue] = 1 / max(floor, statistics.pvariance(map(math.log, ratios)))
        if job.app and job.width and state.progress > 0:
            used = self._app_log_gpu_s.setdefault(job.app, deque(maxlen=self.history))
            before = len(used)
            used.append(math.log(job.width * min(job.runtime_s.values()) * state.progress))
            spread = statistics.pvariance(used) * len(used)
            self._spread += spread - self._app_spread.get(job.app, 0.0)
            self._spread_dof += len(used) - before - (before == 0)  # Σ (jobs − 1)
            self._app_spread[job.app] = spread
            self._app_mean[job.app] = statistics.fmean(used)


def _log_declared_gpu_s(job: SchedJob) -> float:
    return math.log(max(job.width * min(job.runtime_s.values()), 1e-300))


def declaration_row(job: SchedJob, queues: dict[str, int], apps: dict[str, int]) -> tuple[float, int, int]:
    """What `HistoryEstimator.declared_left` reads of a job, as a policy's table row: the log of its
    declared GPU-seconds on its fastest type and the codes of its queue and application in `queues`
    and `apps` (a new name gets the next code)."""
    return (
        _log_declared_gpu_s(job),
        queues.setdefault(job.queue, len(queues)),
        apps.setdefault(job.app, len(apps)),
    )


def posterior_ratio(
    log_declared_gpu_s: ArrayLike,
    ratio: ArrayLike,
    error_precision: ArrayLike,
    mean: ArrayLike,
    precision: ArrayLike,
) -> np.ndarray:
    """A declared job's expected total work in units of its declaration: the queue's `ratio` where the
    application's prior or the declarations' error is not yet known (a precision of 0), else the
    normal-normal posterior median of its log work, the declaration (corrected by the queue's median
    `ratio`) weighted by `error_precision` and the application's `mean` by its `precision`. Works
    element-wise on arrays, so a policy may rank every job in one pass."""
    log_declared_gpu_s, ratio = np.asarray(log_declared_gpu_s, float), np.asarray(ratio, float)
    error_precision, precision = np.asarray(error_precision, float), np.asarray(precision, float)
    known = (error_precision > 0) & (precision > 0)
    weight = np.where(known, precision / np.where(known, error_precision + precision, 1.0), 0.0)
    corrected = log_declared_gpu_s + np.log(ratio)
    return ratio * np.exp(weight * (np.asarray(mean, float) - corrected))
