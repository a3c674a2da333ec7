"""Gavel (Narayanan et al., OSDI'20): heterogeneity-aware allocation from a throughput table.

Each round an LP picks the time-fraction matrix X (jobs × accelerator types) that maximises total
throughput Σ_j Σ_t T[j,t]·X[j,t], subject to Σ_t X[j,t] ≤ 1 per job and Σ_j gpus_j·X[j,t] ≤ GPUs
of type t ("max-sum-throughput", the objective the Sia artifact runs; `objective="max_min"` gives
the max-min-fairness variant over throughputs normalised by each job's best type). Gavel's round
scheduler then runs the (job, type) pairs with the largest X / (share of rounds received) first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from suanli.sched.job import JobState, SchedJob
from suanli.sched.policies.base import Hook, Policy, View
from suanli.spec.errors import PlanInfeasible


def gavel_allocation(
    throughput: np.ndarray, gpus: np.ndarray, capacity: np.ndarray, objective: str = "max_sum"
) -> np.ndarray:
    """Solve Gavel's LP. `throughput[j, t]` (0 = cannot run), `gpus[j]`, `capacity[t]` → X[j, t]."""
    jobs, types = throughput.shape
    if jobs == 0:
        return np.zeros((0, types))
    if objective == "max_sum":
        plain = _everyone_on_their_best_type(throughput, gpus, capacity)
        one_type_each = np.all(np.count_nonzero(throughput > 0, axis=1) <= 1)
        if plain is None and one_type_each and np.all(np.isfinite(throughput)) and np.all(capacity >= 0):
            plain = _one_type_each(throughput, gpus, capacity)
        if plain is not None:
            return plain
    n = jobs * types
    cols = np.arange(n)
    job_of, type_of = np.repeat(np.arange(jobs), types), np.tile(np.arange(types), jobs)
    # Sparse rows: the dense ones were jobs × (jobs·types), 3.2 GB at 20k jobs.
    row_job = sparse.csr_matrix((np.ones(n), (job_of, cols)), shape=(jobs, n))
    row_type = sparse.csr_matrix((gpus[job_of].astype(float), (type_of, cols)), shape=(types, n))
    a_cap = sparse.vstack([row_job, row_type])
    bounds = np.column_stack([np.zeros(n), (throughput > 0).ravel().astype(float)])
    if objective == "max_sum":
        x = _solve(
            objective,
            -throughput.ravel(),
            A_ub=_pruned(a_cap),
            b_ub=np.concatenate([np.ones(jobs), capacity]),
            bounds=bounds,
        )
        return x.reshape(jobs, types)
    # max-min: maximise z with Σ_t (T[j,t]/max_t T[j,t])·X[j,t] ≥ z for every job.
    norm = throughput / np.maximum(throughput.max(axis=1, keepdims=True), 1e-12)
    a_fair = sparse.csr_matrix(
        (
            np.concatenate([-norm.ravel(), np.ones(jobs)]),
            (np.concatenate([job_of, np.arange(jobs)]), np.concatenate([cols, np.full(jobs, n)])),
        ),
        shape=(jobs, n + 1),
    )
    c = np.zeros(n + 1)
    c[n] = -1.0
    x = _solve(
        objective,
        c,
        A_ub=_pruned(sparse.vstack([sparse.hstack([a_cap, sparse.csr_matrix((jobs + types, 1))]), a_fair])),
        b_ub=np.concatenate([np.ones(jobs), capacity, np.zeros(jobs)]),
        bounds=np.vstack([bounds, [0.0, np.inf]]),
    )
    return x[:n].reshape(jobs, types)


def _pruned(matrix: sparse.spmatrix) -> sparse.csc_matrix:
    """Without stored zeros, as the dense matrix it replaces would reach the solver."""
    pruned = sparse.csc_matrix(matrix)
    pruned.eliminate_zeros()
    return pruned


def _everyone_on_their_best_type(
    throughput: np.ndarray, gpus: np.ndarray, capacity: np.ndarray
) -> np.ndarray | None:
    """The max-sum optimum without the LP when it is plain: every job has one best type and all of
    them fit there at once. Each job then gets its largest possible term, so X = 1 on that type is
    the only optimum. None otherwise (ties or contention: the LP decides)."""
    best = throughput.argmax(axis=1)
    rows = np.arange(len(best))
    top = throughput[rows, best]
    if not np.all(top > 0) or np.any(np.sum(throughput == top[:, None], axis=1) > 1):
        return None
    if np.any(np.bincount(best, weights=gpus, minlength=len(capacity)) > capacity):
        return None
    allocation = np.zeros_like(throughput, dtype=float)
    allocation[rows, best] = 1.0
    return allocation


def _one_type_each(throughput: np.ndarray, gpus: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """The max-sum optimum without the LP when every job can run on one type at most: the LP then
    splits into one fractional knapsack per type, solved greedily (Dantzig, Oper. Res. 1957): by
    throughput per GPU, best first, each job whole while it fits, the first that does not gets the
    room left. That optimum is unique unless jobs tie on throughput per GPU at the margin; the LP's
    pick among those is then arbitrary (the vertex HiGHS lands on) and this one takes them in the
    order given (earliest first). Same objective either way."""
    allocation = np.zeros_like(throughput, dtype=float)
    for t in range(throughput.shape[1]):
        jobs = np.flatnonzero(throughput[:, t] > 0)
        best_first = jobs[np.argsort(-(throughput[jobs, t] / gpus[jobs]), kind="stable")]
        taken = np.cumsum(gpus[best_first])
        whole = int(np.searchsorted(taken, capacity[t], side="right"))
        allocation[best_first[:whole], t] = 1.0
        if whole < len(best_first):
            room = capacity[t] - (taken[whole - 1] if whole else 0.0)
            allocation[best_first[whole], t] = room / gpus[best_first[whole]]
    return allocation


def _solve(objective: str, c: np.ndarray, **constraints: Any) -> np.ndarray:
    """HiGHS's optimum, or PlanInfeasible naming the policy, the objective and the solver's verdict
    (bad input such as a NaN throughput, infeasible, unbounded, iteration limit, numerical trouble)."""
    try:
        result = linprog(c, method="highs", **constraints)
    except ValueError as exc:
        raise PlanInfeasible(f"gavel: the {objective} allocation LP was refused: {exc}") from None
    if result.status != 0:
        raise PlanInfeasible(
            f"gavel: the {objective} allocation LP did not solve (status {result.status}: {result.message})"
        )
    return result.x


@dataclass
class Gavel(Policy):
    """Per job (a row of the arrays below, found by its state's identity): its throughput per type,
    width, submit time and id, the time it has received per type, and this round's priority."""

    name = "gavel"
    hooks = frozenset({Hook.ON_ROUND, Hook.ON_BOUND})
    reads_progress = False
    preemptive = True
    moves_running = True
    round_s: float = 360.0
    tick_on_events: bool = False
    objective: Literal["max_sum", "max_min"] = "max_sum"
    _types: list[str] = field(default_factory=list)  # sorted(capacity)
    _slots: dict[int, tuple[JobState, SchedJob, int]] = field(default_factory=dict)  # id(state) → its row
    _throughput: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # 0: cannot run there
    _job_time: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    _type_time: np.ndarray = field(default_factory=lambda: np.empty(0))
    _width: np.ndarray = field(default_factory=lambda: np.empty(0))
    _submit: np.ndarray = field(default_factory=lambda: np.empty(0))
    _ids: np.ndarray = field(default_factory=lambda: np.empty(0, "<U1"))
    _best: np.ndarray = field(default_factory=lambda: np.empty(0))  # this round's best priority
    _ranking: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))  # into `_rankings`
    _rankings: list[list[str]] = field(default_factory=list)  # distinct type orders of this round
    _interned: dict[int, list[str]] = field(default_factory=dict)  # ranking number → its list
    _bound: list[tuple[JobState, str]] = field(default_factory=list)  # `on_bound` since the round

    def on_round(self, view: View) -> None:
        if not self._types:
            self._types = sorted(view.capacity)
            self._type_time = np.zeros(len(self._types))
        self._credit_bound()
        active = view.active()
        if not active:  # a round with nobody to allocate (the arrays may not have their columns yet)
            self._rankings = []
            return
        if len(self._slots) > 4 * len(active) + 1024:
            self._forget_finished(view)
        slots = self._slots_of(active, view)
        table, gpus = self._throughput[slots], self._width[slots]
        capacity = np.array([view.capacity[t] for t in self._types], dtype=float)
        x = gavel_allocation(table, gpus, capacity, self.objective).round(5)
        received = self._job_time[slots] / self._type_time
        with np.errstate(divide="ignore", invalid="ignore"):
            priority = np.where(x > 0, x / received, 0.0)
        usable = table > 0
        self._best[slots] = np.where(usable, priority, -np.inf).max(axis=1, initial=-np.inf)
        self._best[slots[~usable.any(axis=1)]] = 0.0
        # each job's types by (-priority, name): `_types` is sorted, so a stable sort by -priority;
        # one number per ranking (its type codes and length, in base types + 1) finds the distinct ones
        by_priority = np.argsort(np.where(usable, -priority, np.inf), axis=1, kind="stable")
        base = len(self._types) + 1
        digits = np.column_stack([by_priority, usable.sum(axis=1)])
        kinds, which = np.unique(digits @ base ** np.arange(digits.shape[1]), return_inverse=True)
        self._rankings = [self._ranking_of(int(kind), base) for kind in kinds]
        self._ranking[slots] = which

    def _ranking_of(self, kind: int, base: int) -> list[str]:
        """The types of a ranking number, one list object per ranking for as long as the policy lives
        (`ranked_types_of` answers with the same object while a job's ranking stays)."""
        known = self._interned.get(kind)
        if known is None:
            digits = [kind // base**i % base for i in range(len(self._types) + 1)]
            known = self._interned[kind] = [self._types[c] for c in digits[: digits[-1]]]
        return known

    def _credit_bound(self) -> None:
        """A round of service for every job bound in the last pass, to the job and to its type (to
        the type one addition at a time, as each was bound)."""
        code = {t: c for c, t in enumerate(self._types)}
        n = len(self._bound)
        slots = np.fromiter((self._slots[id(state)][2] for state, _ in self._bound), np.intp, n)
        codes = np.fromiter((code[t] for _, t in self._bound), np.intp, n)
        self._job_time[slots, codes] += self.round_s  # a job is bound once per pass
        for c, count in enumerate(np.bincount(codes, minlength=len(self._types)).tolist()):
            total = float(self._type_time[c])
            for _ in range(count):
                total += self.round_s
            self._type_time[c] = total
        self._bound = []

    def _slots_of(self, states: list[JobState], view: View) -> np.ndarray:
        """Each job's row, looked up by its state's identity (cheaper than its id); a new job gets a
        row (half a round received on every type, as Gavel starts it) and a resized one its new
        throughput row."""
        known = self._slots.get
        slots = np.fromiter(
            (
                r[2] if (r := known(id(s))) is not None and r[1] is s.job else self._row(s, view)
                for s in states
            ),
            np.intp,
            len(states),
        )
        return slots

    def _row(self, state: JobState, view: View) -> int:
        job = state.job
        known = self._slots.get(id(state))
        if known is None:
            slot = len(self._slots)
            if slot == len(self._width):
                self._grow(max(1024, slot))
            self._job_time[slot] = self.round_s / 2
            for code in range(len(self._types)):
                self._type_time[code] += self.round_s / 2
        else:
            slot = known[2]
        self._throughput[slot] = [
            job.table_throughput(t) if self.filter(job, t, view) else 0.0 for t in self._types
        ]
        self._width[slot], self._submit[slot] = job.width, job.submit_s
        if len(job.job_id) > self._ids.dtype.itemsize // 4:  # a longer id than any before: widen
            self._ids = self._ids.astype(f"<U{len(job.job_id)}")
        self._ids[slot] = job.job_id
        self._slots[id(state)] = (state, job, slot)
        return slot

    def _grow(self, rows: int) -> None:
        types = len(self._types)
        self._throughput = np.concatenate([self._throughput.reshape(-1, types), np.empty((rows, types))])
        self._job_time = np.concatenate([self._job_time.reshape(-1, types), np.empty((rows, types))])
        self._width, self._submit, self._best = (
            np.concatenate([column, np.empty(rows)]) for column in (self._width, self._submit, self._best)
        )
        self._ids = np.concatenate([self._ids, np.empty(rows, self._ids.dtype)])
        self._ranking = np.concatenate([self._ranking, np.zeros(rows, np.intp)])

    def _forget_finished(self, view: View) -> None:
        """Keep the rows of the active jobs only, in fresh order."""
        keep = [
            (state, job, slot) for state, job, slot in self._slots.values() if state.job.job_id in view.jobs
        ]
        old = np.array([slot for _, _, slot in keep], np.intp)
        for name in ("_throughput", "_job_time", "_width", "_submit", "_ids", "_best", "_ranking"):
            setattr(self, name, getattr(self, name)[old])
        self._slots = {id(state): (state, job, new) for new, (state, job, _) in enumerate(keep)}

    def order(self, view: View) -> list[JobState]:
        """By this round's best priority, then submit time, then id."""
        active = view.active()
        slots = self._slots_of(active, view)
        by = np.lexsort((self._ids[slots], self._submit[slots], -self._best[slots]))
        return [active[i] for i in by]

    def ranked_types(self, state: JobState, view: View) -> list[str]:
        return self._rankings[self._ranking[self._slots[id(state)][2]]]

    def ranked_types_of(self, states: list[JobState], view: View) -> list[list[str]]:
        rankings = self._rankings
        return [rankings[k] for k in self._ranking[self._slots_of(states, view)].tolist()]

    def on_bound(self, state: JobState, view: View) -> None:
        self._bound.append((state, state.accel_type or ""))
