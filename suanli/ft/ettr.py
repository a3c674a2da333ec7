"""Monte-Carlo effective training time ratio (ETTR) under published failure distributions.

A training run checkpoints every `interval_s` of work, losing `stall_s` each time. Failures
arrive as a renewal process at the job level; each one throws away the work since the last
complete checkpoint and costs `restart_s` (a failure during a restart starts it again, as in
Daly 2006). With a predictor (Aupy et al. 2013), a predicted failure is preceded by a proactive
checkpoint and loses no work; false alarms cost a proactive checkpoint each.

Gaps between failures are Weibull: shape 1 is the Poisson process that the analytic formulas
assume; the LANL 1996-2005 records fit shapes of about 0.7 (Schroeder & Gibson, DSN'06, report
0.7-0.8): failures cluster, and a fresh failure makes the next one more likely.

ETTR = productive training time / wall time (the metric of Kokolis et al. 2024, "Revisiting
Reliability in Large-Scale Machine Learning Research Clusters").
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from suanli.ft.interval import (
    check_non_negative,
    check_positive,
    check_predictor,
    failures_per_1k_gpu_month,
)
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError

# Under datasets/ (see failure/SOURCE.md); a path given instead is read as it is.
LANL_FAILURES = "failure/lanl_failures_1996_2005.csv"
LLAMA3_INTERRUPTIONS = "failure/llama3_interruptions.csv"
CLUSTER_FAILURE_RATES = "failure/cluster_failure_rates.csv"
MINUTE_S = 60.0


@dataclass(frozen=True)
class WeibullGaps:
    """Time between job-interrupting failures: Weibull with this shape and mean (shape 1 = Poisson)."""

    mean_s: float
    shape: float = 1.0

    def __post_init__(self) -> None:
        check_positive("mean_s", self.mean_s)
        check_positive("shape", self.shape)

    @property
    def scale_s(self) -> float:
        return self.mean_s / math.gamma(1.0 + 1.0 / self.shape)

    def sample_s(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.scale_s * rng.weibull(self.shape, size)


@dataclass(frozen=True)
class GapFit:
    """A maximum-likelihood Weibull fit to failure gaps, with the exponential as the null model."""

    n_gaps: int
    shape: float
    scale_s: float
    mean_s: float
    weibull_loglik: float
    exponential_loglik: float

    @property
    def weibull_preferred(self) -> bool:
        """Likelihood-ratio test, one extra parameter, 1 % level (chi-square(1) critical 6.63)."""
        return 2.0 * (self.weibull_loglik - self.exponential_loglik) > stats.chi2.ppf(0.99, 1)


def fit_weibull_gaps(gaps_s: np.ndarray) -> GapFit:
    """Fit Weibull (location 0) by maximum likelihood; gaps must be positive."""
    gaps = np.asarray(gaps_s, dtype=float)
    if gaps.size < 10 or np.any(gaps <= 0):
        raise SpecError(f"need at least 10 positive gaps to fit, got {gaps.size} (min {gaps.min(initial=0)})")
    shape, _, scale = stats.weibull_min.fit(gaps, floc=0)
    mean = float(gaps.mean())
    return GapFit(
        n_gaps=int(gaps.size),
        shape=float(shape),
        scale_s=float(scale),
        mean_s=mean,
        weibull_loglik=float(stats.weibull_min.logpdf(gaps, shape, 0, scale).sum()),
        exponential_loglik=float(stats.expon.logpdf(gaps, 0, mean).sum()),
    )


def lanl_failure_gaps_s(path: Path | str = LANL_FAILURES, min_gaps: int = 100) -> dict[int, np.ndarray]:
    """System-level gaps between failure starts in the LANL 1996-2005 records, per system.

    Times are recorded to the minute; zero gaps (several nodes logged in the same minute, one
    event seen many times) are dropped, so a gap is the time between distinct failure minutes.
    Systems with fewer than `min_gaps` gaps are left out.
    """
    starts: dict[int, list[float]] = {}
    with io.StringIO(read_text(path)) as handle:
        for row in csv.DictReader(handle):
            started_min = np.datetime64(row["started"].replace(" ", "T"), "m").astype(np.int64)
            starts.setdefault(int(row["system"]), []).append(float(started_min) * MINUTE_S)
    result = {}
    for system, times in sorted(starts.items()):
        gaps = np.diff(np.sort(np.asarray(times)))
        gaps = gaps[gaps > 0]
        if gaps.size >= min_gaps:
            result[system] = gaps
    return result


def lanl_weibull_fits(path: Path | str = LANL_FAILURES, min_gaps: int = 100) -> dict[int, GapFit]:
    return {system: fit_weibull_gaps(gaps) for system, gaps in lanl_failure_gaps_s(path, min_gaps).items()}


def lanl_weibull_shape(path: Path | str = LANL_FAILURES) -> float:
    """The median Weibull shape over LANL systems with at least 100 gaps."""
    return float(np.median([fit.shape for fit in lanl_weibull_fits(path).values()]))


def load_llama3_breakdown(path: Path | str = LLAMA3_INTERRUPTIONS) -> dict[str, tuple[str, int]]:
    """Llama 3's 419 unexpected interruptions by root cause: component -> (category, count).

    Dubey et al. 2024, Table 5. Its percent column does not match count / 419 for "Faulty GPU"
    (148 is 35.3 %, printed 30.1 %); the counts add up to 419 and are what is used here.
    """
    with io.StringIO(read_text(path)) as handle:
        return {row["component"]: (row["category"], int(row["count"])) for row in csv.DictReader(handle)}


def published_failure_rates(path: Path | str = CLUSTER_FAILURE_RATES) -> dict[str, float]:
    """Failures per 1,000 GPU-months of the published runs that give GPUs, days and a count.

    Llama 3 405B gives 14.2 (Dubey et al. 2024); each row names its reference in the file.
    """
    with io.StringIO(read_text(path)) as handle:
        return {
            row["source"]: failures_per_1k_gpu_month(
                int(row["interruptions"]), int(row["gpus"]), float(row["period_days"])
            )
            for row in csv.DictReader(handle)
            if row["gpus"] and row["period_days"] and row["interruptions"]
        }


def category_share(breakdown: dict[str, tuple[str, int]], categories: Iterable[str]) -> float:
    """Share of interruptions whose category is one of `categories` (e.g. what a GPU predictor sees)."""
    wanted = set(categories)
    known = {category for category, _ in breakdown.values()}
    if unknown := wanted - known:
        raise SpecError(f"unknown failure categories {sorted(unknown)}; known: {sorted(known)}")
    total = sum(count for _, count in breakdown.values())
    return sum(count for category, count in breakdown.values() if category in wanted) / total


@dataclass(frozen=True)
class CheckpointRun:
    """What is simulated: periodic checkpoints, restarts, and optionally a failure predictor."""

    interval_s: float
    stall_s: float
    restart_s: float
    recall: float = 0.0
    precision: float = 1.0
    proactive_stall_s: float | None = None

    def __post_init__(self) -> None:
        check_positive("interval_s", self.interval_s)
        check_non_negative("stall_s", self.stall_s)
        check_non_negative("restart_s", self.restart_s)
        check_predictor(self.recall, self.precision)
        if self.proactive_stall_s is not None:
            check_non_negative("proactive_stall_s", self.proactive_stall_s)

    @property
    def proactive_s(self) -> float:
        return self.stall_s if self.proactive_stall_s is None else self.proactive_stall_s


@dataclass(frozen=True)
class EttrEstimate:
    mean: float
    std_error: float
    runs: int
    failures_per_run: float


def _failure_gaps_until_s(rng: np.random.Generator, gaps: WeibullGaps, horizon_s: float) -> np.ndarray:
    """Lengths of the intervals between failures that cover [0, horizon]; the last ends at horizon."""
    drawn = gaps.sample_s(rng, int(1.5 * horizon_s / gaps.mean_s) + 16)
    while drawn.sum() < horizon_s:
        drawn = np.concatenate([drawn, gaps.sample_s(rng, drawn.size)])
    ends = np.cumsum(drawn)
    last = int(np.searchsorted(ends, horizon_s))
    lengths = drawn[: last + 1].copy()
    lengths[last] = horizon_s - (ends[last - 1] if last else 0.0)
    return lengths


def _one_run_ettr(
    rng: np.random.Generator, run: CheckpointRun, gaps: WeibullGaps, horizon_s: float
) -> tuple[float, int]:
    lengths = _failure_gaps_until_s(rng, gaps, horizon_s)
    failed = np.arange(lengths.size) < lengths.size - 1  # the last interval is cut by the horizon
    restart = np.where(np.arange(lengths.size) > 0, run.restart_s, 0.0)
    predicted = failed & (rng.random(lengths.size) < run.recall)
    false_alarm_rate = run.recall * (1.0 - run.precision) / (run.precision * gaps.mean_s)
    false_alarms = rng.poisson(false_alarm_rate * lengths)
    busy = lengths - restart - run.proactive_s * (false_alarms + predicted)
    busy = np.clip(busy, 0.0, None)
    cycle = run.interval_s + run.stall_s
    cycles = np.floor(busy / cycle)
    in_progress = np.minimum(busy - cycles * cycle, run.interval_s)
    work = cycles * run.interval_s + np.where(predicted | ~failed, in_progress, 0.0)
    return float(work.sum() / horizon_s), int(failed.sum())


def simulate_ettr(
    run: CheckpointRun, gaps: WeibullGaps, horizon_s: float, runs: int = 200, seed: int = 0
) -> EttrEstimate:
    """Mean ETTR of `runs` independent training runs of `horizon_s` wall time each."""
    check_positive("horizon_s", horizon_s)
    if runs < 2:
        raise SpecError(f"runs must be >= 2 to estimate an error, got {runs}")
    rng = np.random.default_rng(seed)
    results = [_one_run_ettr(rng, run, gaps, horizon_s) for _ in range(runs)]
    ettr = np.array([value for value, _ in results])
    return EttrEstimate(
        mean=float(ettr.mean()),
        std_error=float(ettr.std(ddof=1) / math.sqrt(runs)),
        runs=runs,
        failures_per_run=float(np.mean([count for _, count in results])),
    )
