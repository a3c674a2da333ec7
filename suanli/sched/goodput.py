"""Goodput of elastic training jobs: Pollux's model (Qiao et al., OSDI'21) per GPU type, as Sia
(Jayaram Subramanya et al., SOSP'23) uses it, fitted from Sia's measured profiles.

goodput = throughput × statistical efficiency. Throughput comes from Pollux's step-time model
(compute linear in the local batch, gradient sync that grows with the replicas and depends on
whether they span nodes, combined with an overlap exponent γ), fitted per (app, GPU type) to the
`placements-*.csv` / `scalability-*.csv` rows. Efficiency comes from the gradient noise scale
(McCandlish et al. 2018) in the `validation-*.csv` statistics at the job's current epoch. The batch
size is chosen per width to maximise predicted goodput, as Pollux's and Sia's jobs do.

Progress is counted in Sia's unit: iterations at the app's initial batch size M0 ("M0-steps"); a
step of batch M at efficiency E is worth M/M0·E of them. An elastic job's 1.0 of progress is
`Elastic.unit_steps` M0-steps (its declared work).

Two views of the same job: the policy predicts goodput with the fitted model (`predicted_goodput`),
what a live system can know from profiles; the simulator's executor runs the job at the goodput
measured in the profiles at its actual placement (`measured_goodput`), with Sia's calibration
slowdown, as Sia's simulator does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
from scipy.optimize import minimize

from suanli.sched.job import SchedJob
from suanli.sched.traces.sia import APPS, PROFILED_TYPES, AppProfile, packed_placement, profile

ACCEL_SUFFIX = {accel: suffix for suffix, (accel, _) in PROFILED_TYPES.items()}
BATCH_CANDIDATES = 50  # Pollux's optimize() samples this many total batch sizes, geometrically spaced
MAX_REPLICAS = 64  # Sia's simulator caps a job at 64 replicas
_EPS = 1e-8


@dataclass(frozen=True)
class StepTimeModel:
    """Pollux's `PerfParams` (OSDI'21 §3.2): seconds per step as a function of the placement."""

    alpha_c_s: float  # compute: constant
    beta_c_s: float  # compute: per example of the local batch
    alpha_n_s: float  # sync across nodes: constant
    beta_n_s: float  # sync across nodes: per replica beyond 2
    alpha_r_s: float  # sync inside one node: constant
    beta_r_s: float  # sync inside one node: per replica beyond 2
    gamma: float  # overlap of compute and sync, 1 (none) … 10 (≈ full)


def compute_time_s(model: StepTimeModel, atomic_bsz: np.ndarray | float) -> np.ndarray:
    """Forward + backward time, linear in the per-GPU batch (Pollux eq. 11)."""
    return model.alpha_c_s + model.beta_c_s * np.asarray(atomic_bsz, dtype=float)


def sync_time_s(model: StepTimeModel, nodes: np.ndarray | int, replicas: np.ndarray | int) -> np.ndarray:
    """Gradient all-reduce time: the slowest link's constant plus a ring retrogression per replica
    beyond 2 (Pollux eq. 12); ~0 for a single replica."""
    nodes, replicas = np.asarray(nodes), np.asarray(replicas)
    conds = [nodes > 1, replicas > 1]
    alpha = np.select(conds, [model.alpha_n_s, model.alpha_r_s], _EPS)
    beta = np.select(conds, [model.beta_n_s, model.beta_r_s], _EPS)
    return alpha + beta * np.maximum(replicas - 2, _EPS)


def step_time_s(
    model: StepTimeModel,
    nodes: np.ndarray | int,
    replicas: np.ndarray | int,
    atomic_bsz: np.ndarray | float,
    accum_steps: np.ndarray | int = 0,
) -> np.ndarray:
    """One optimizer step: `accum_steps` compute-only micro-steps, then one whose compute overlaps
    the sync as a γ-norm (Pollux eq. 13)."""
    compute = compute_time_s(model, atomic_bsz)
    sync = sync_time_s(model, nodes, replicas)
    overlapped = (compute**model.gamma + sync**model.gamma) ** (1.0 / model.gamma)
    return np.asarray(accum_steps) * compute + overlapped


def fit_step_time(
    nodes: np.ndarray, replicas: np.ndarray, atomic_bsz: np.ndarray, compute_s: np.ndarray, step_s: np.ndarray
) -> StepTimeModel:
    """Least squares in log space of the compute and step times, with Pollux's priors (`fit_perf_params`
    in petuum/adaptdl): a small pull of γ towards 1 and of the retrogression terms towards 0; sync
    terms with no observation behind them are pinned at their lower bound."""
    lower = np.array([_EPS] * 6 + [1.0])
    upper = np.array([np.inf] * 6 + [10.0])
    fixed: dict[int, float] = {}
    if len(np.unique(atomic_bsz)) == 1:
        fixed[0] = float(np.mean(compute_s)) / 2
    if not np.any(nodes > 1):
        fixed |= {2: _EPS, 3: _EPS}
    if not np.any((nodes == 1) & (replicas > 1)):
        fixed |= {4: _EPS, 5: _EPS}
    if not np.any(replicas > 2):
        fixed |= {3: _EPS, 5: _EPS}
    log_compute, log_step = np.log(compute_s), np.log(step_s)

    def full(x: np.ndarray) -> StepTimeModel:
        values = list(x)
        for i, v in fixed.items():
            values[i] = v
        return StepTimeModel(*values)

    def loss(x: np.ndarray) -> float:
        m = full(x)
        pred_compute = compute_time_s(m, atomic_bsz)
        pred_step = step_time_s(m, nodes, replicas, atomic_bsz)
        err = math.sqrt(np.mean((np.log(pred_compute) - log_compute) ** 2))
        err += math.sqrt(np.mean((np.log(pred_step) - log_step) ** 2))
        prior = 1e-3 * (m.gamma - 1) ** 2 + 1e-2 * (
            (m.beta_n_s / m.alpha_n_s) ** 2 + (m.beta_r_s / m.alpha_r_s) ** 2
        )
        return err + prior

    # Start from the least-squares line through the compute times (Pollux starts from fixed guesses,
    # which leaves some of Sia's profiles, e.g. yolov3 on A100, in a poor local minimum).
    beta_c, alpha_c = np.polyfit(atomic_bsz, compute_s, 1)
    sync = float(np.mean(np.maximum(step_s - compute_s, _EPS)))
    start = np.array([max(alpha_c, 1e-3), max(beta_c, 1e-6), sync, sync / 10, sync, sync / 10, 1.0 + 1e-3])
    result = minimize(loss, start, method="L-BFGS-B", bounds=list(zip(lower, upper, strict=True)))
    model = full(result.x)
    if not np.any(nodes > 1):  # Pollux's prior: crossing nodes is no faster than staying inside one
        model = replace(
            model,
            alpha_n_s=max(model.alpha_n_s, 1.1 * model.alpha_r_s),
            beta_n_s=max(model.beta_n_s, 1.1 * model.beta_r_s),
        )
    return model


def efficiency(grad_sqr: float, grad_var: float, batch: float, init_batch: float) -> float:
    """Statistical efficiency of batch `batch` relative to `init_batch` (Pollux eq. 6): with the
    gradient noise scale φ = M0·var/sqr (McCandlish et al. 2018), E = (φ + M0) / (φ + M) ≤ 1; a
    step of batch M makes M/M0·E steps of progress at M0."""
    scale = batch / init_batch
    denom = grad_var + scale * grad_sqr
    return (grad_var + grad_sqr) / denom if denom > 0 else 1.0 / scale


@dataclass(frozen=True)
class BatchChoice:
    atomic_bsz: int
    accum_steps: int
    goodput: float  # predicted M0-steps per second

    @property
    def per_replica(self) -> int:
        return self.atomic_bsz * (self.accum_steps + 1)


class AppGoodput:
    """One Sia app on one profiled GPU type: the fitted step-time model, its batch limits and its
    gradient statistics per epoch."""

    def __init__(self, app: str, accel_type: str) -> None:
        self.app, self.accel_type = app, accel_type
        self.suffix = ACCEL_SUFFIX[accel_type]
        self.per_node = PROFILED_TYPES[self.suffix][1]
        self.profile: AppProfile = profile(app, self.suffix)
        self.max_epochs, self.slowdown, _ = APPS[app]
        p = self.profile.placements
        self.min_local = int(p["local_bsz"].min())
        self.max_local = 57 if (app, self.suffix) == ("deepspeech2", "rtx") else int(p["local_bsz"].max())
        self.model = fit_step_time(*self.profile_rows())
        self.epoch_progress = np.array([self.profile.progress_at(e) for e in range(self.max_epochs + 1)])

    def profile_rows(self) -> tuple[np.ndarray, ...]:
        """(nodes, replicas, local batch, compute s, step s) of every measured row, placements first
        (Sia's `seed_profiles`: a scalability row does not override a placement row)."""
        rows: dict[tuple[float, float, float], tuple[float, float]] = {}
        for table in (self.profile.placements, self.profile.scalability):
            for n, r, b, step, sync in zip(
                table["num_nodes"],
                table["num_replicas"],
                table["local_bsz"],
                table["step_time"],
                table["sync_time"],
                strict=True,
            ):
                rows.setdefault((n, r, b), (step - sync, step))
        keys, values = np.array(list(rows)), np.array(list(rows.values()))
        return keys[:, 0], keys[:, 1], keys[:, 2], values[:, 0], values[:, 1]

    @property
    def init_batch(self) -> int:
        return self.profile.init_batch_size

    @property
    def total_steps(self) -> float:
        """M0-steps to train the app for its epoch budget."""
        return float(self.epoch_progress[-1])

    def max_replicas(self) -> int:
        """Sia's cap on an adaptive job's replicas (cluster.py `get_sia_multi_job_info`)."""
        return min(MAX_REPLICAS, self.profile.max_batch_size // self.min_local)

    def epoch_at(self, progress_steps: float) -> int:
        crossed = int(np.searchsorted(self.epoch_progress, progress_steps, side="right"))
        return min(crossed - 1, self.max_epochs - 1)

    @cache  # noqa: B019 — one instance per (app, type), kept for the process
    def choose_batch(self, nodes: int, replicas: int, epoch: int) -> BatchChoice | None:
        """The batch a Pollux job picks on (nodes, replicas) at `epoch`: the total batch among
        geometrically spaced candidates that maximises predicted goodput, split into micro-batches
        that fit the GPU (Pollux `GoodputFunction.optimize` with accumulation, Sia's memory caps)."""
        max_batch = self.profile.max_batch_size
        low = max(self.init_batch, self.min_local * replicas)
        if low > max_batch:
            return None
        max_local = min(self.max_local, self.profile.max_local_bsz(packed_placement(replicas, self.per_node)))
        best = None
        for batch in np.geomspace(low, max_batch, BATCH_CANDIDATES):
            local = batch / replicas
            accum = math.ceil(local / max_local - _EPS) - 1
            if replicas == 1 and local > self.init_batch + _EPS:
                accum = max(accum, 1)
            atomic = math.ceil(local / (accum + 1) - _EPS)
            atomic = min(atomic, int(max_batch / (replicas * (accum + 1))))
            if not self.min_local <= atomic <= max_local:
                continue
            total = replicas * atomic * (accum + 1)
            sqr, var = self.profile.grad_stats(total, epoch)
            gain = total / self.init_batch * efficiency(sqr, var, total, self.init_batch)
            goodput = gain / float(step_time_s(self.model, nodes, replicas, atomic, accum))
            if best is None or goodput > best.goodput:
                best = BatchChoice(atomic, accum, goodput)
        return best

    def predicted_goodput(self, gpus: int, epoch: int) -> float:
        """Predicted M0-steps/s on `gpus` GPUs packed on the fewest nodes (0 if it cannot run)."""
        choice = self.choose_batch(math.ceil(gpus / self.per_node), gpus, epoch)
        return choice.goodput if choice else 0.0

    @cache  # noqa: B019
    def measured_goodput(self, placement: tuple[int, ...], epoch: int) -> float:
        """M0-steps/s the job makes on `placement` (GPUs per node) at `epoch`, with the batch it picks:
        the measured step and sync times (the fitted model where the profiles do not reach), gradient
        accumulation and Sia's calibration slowdown, as Sia's simulator steps an adaptive job."""
        replicas = sum(placement)
        choice = self.choose_batch(len(placement), replicas, epoch)
        if choice is None:  # more replicas than the largest batch allows: the extra GPUs idle
            return self.measured_goodput(packed_placement(self.max_replicas(), self.per_node), epoch)
        measured = self.profile.step_time_s(placement, choice.atomic_bsz)
        if measured is None:
            step = float(step_time_s(self.model, len(placement), replicas, choice.atomic_bsz))
            sync = step - float(compute_time_s(self.model, choice.atomic_bsz))
        else:
            step, sync = measured
        iteration_s = (step + (step - sync) * choice.accum_steps) * self.slowdown
        total = replicas * choice.per_replica
        sqr, var = self.profile.grad_stats(total, epoch)
        return total / self.init_batch * efficiency(sqr, var, total, self.init_batch) / iteration_s


@cache
def app_goodput(app: str, accel_type: str) -> AppGoodput:
    return AppGoodput(app, accel_type)


def epoch_of(job: SchedJob, progress: float, accel_type: str) -> int:
    """The epoch an elastic job is in: a live job reports its progress, so this is known."""
    assert job.elastic is not None
    return app_goodput(job.elastic.app, accel_type).epoch_at(progress * job.elastic.unit_steps)


def advance(
    job: SchedJob, accel_type: str, placement: tuple[int, ...], progress: float, seconds: float
) -> float:
    """An elastic job's progress after `seconds` of work on `placement`, its goodput changing with
    each epoch's gradient statistics."""
    assert job.elastic is not None
    app, unit = app_goodput(job.elastic.app, accel_type), job.elastic.unit_steps
    steps = progress * unit
    while seconds > 0:
        epoch = app.epoch_at(steps)
        rate = app.measured_goodput(placement, epoch)
        boundary = app.epoch_progress[epoch + 1] if epoch + 1 < app.max_epochs else math.inf
        if steps + rate * seconds < boundary:
            return (steps + rate * seconds) / unit
        seconds -= (boundary - steps) / rate
        steps = boundary
    return steps / unit


def seconds_to(
    job: SchedJob, accel_type: str, placement: tuple[int, ...], progress: float, target: float
) -> float:
    """Seconds of work on `placement` that take an elastic job from `progress` to `target`."""
    assert job.elastic is not None
    app, unit = app_goodput(job.elastic.app, accel_type), job.elastic.unit_steps
    steps, goal, seconds = progress * unit, target * unit, 0.0
    while steps < goal:
        epoch = app.epoch_at(steps)
        boundary = app.epoch_progress[epoch + 1] if epoch + 1 < app.max_epochs else math.inf
        end = min(goal, boundary)
        seconds += (end - steps) / app.measured_goodput(placement, epoch)
        steps = end
    return seconds


def declared_elastic(job: SchedJob, work: float) -> SchedJob:
    """The job as submitted when its true work is `work` units of what it declared: 1.0 of its
    progress stands for the declared M0-steps (true steps / `work`)."""
    if job.elastic is None:
        return job
    return replace(job, elastic=replace(job.elastic, unit_steps=job.elastic.unit_steps / work))
