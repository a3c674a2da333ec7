"""The control loop: ask the scheduler what to start, have the executor start it, follow every run
to its end, and write each step to the store before acting on the next.

Crash safety: a launch is `pending → starting` (committed) → executor.submit → `starting →
running` (committed). A run key derived from (job, attempt) lets a restarted controller find a run
that started just before the crash; one it cannot find goes back to `pending`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suanli.perf.checkpoint_interval import failures_per_gpu_s, interruption_mtbf_s
from suanli.service.arrays import parse_array
from suanli.service.dependencies import dependency_status, parse_dependency
from suanli.service.executors.base import METRICS_FILE, Executor, Placement, Run
from suanli.service.leader import Leadership
from suanli.service.planning import plan_at_width
from suanli.service.scheduling import SchedulerPort
from suanli.service.store import ANONYMOUS, TERMINAL_STATES, Job, Store
from suanli.spec import Cluster, JobSpec, SpecError, Training, dump_yaml

log = logging.getLogger("suanli.service")

POOL_SAMPLE_EVERY_S = 2.0
LAUNCH_WAIT_S = 30.0
LEADER_RETRY_S = 1.0  # how often a server that does not lead tries to take the lead
SYNC_S = 1.0  # how often the leader queues jobs other servers accepted
MAX_FAILED_ATTEMPTS = 3  # a checkpointed job is started again after a failure, up to this many failures
RECOVERING = "recovering:"  # the reason of a failed attempt's return to the queue
DEFAULT_TRAIN_STEPS = 100  # a model job without a token budget


def train_config(
    spec: JobSpec,
    run_dir: Path,
    plan: dict[str, Any] | None,
    accelerators: int = 0,
    failures_per_1k_gpu_month: float = 0.0,
) -> dict[str, Any]:
    """The runtime's TrainConfig for a model job: steps from the token budget, checkpoints shared
    by all attempts of the job (so a restart resumes, also at another width) and planned for the
    interruptions the scheduler's simulator charges (the cluster's failures at the run's width plus
    a preemption a day), metrics where the service reads them. Without a plan, one data-parallel rank
    per accelerator the run holds (one on a CPU pool)."""
    if spec.model is None:
        raise SpecError(f"{spec.name}: a training job names a model")
    training = spec.training or Training()
    tokens_per_step = training.seq_len * training.global_batch_size
    steps = max(1, training.total_tokens // tokens_per_step) if training.total_tokens else DEFAULT_TRAIN_STEPS
    config: dict[str, Any] = {
        "model": spec.model if isinstance(spec.model, str) else spec.model.model_dump(mode="json"),
        "seq_len": training.seq_len,
        "global_batch_size": training.global_batch_size,
        "steps": steps,
        "precision": "bf16" if training.precision == "bf16" else "fp32",  # what the runtime trains in
        "metrics": {"path": str(run_dir / METRICS_FILE)},
    }
    if plan:
        config["plan"] = plan
    else:
        config["layout"] = {"dp": max(1, accelerators), "zero_stage": 0}
    if spec.checkpoint:
        config["checkpoint"] = {
            "folder": str(run_dir.parent / "checkpoints"),
            "keep_last": spec.checkpoint.keep_last,
            "mtbf_s": interruption_mtbf_s(failures_per_gpu_s(failures_per_1k_gpu_month), accelerators),
        }
    return config


def job_command(spec: JobSpec, run_dir: Path) -> str:
    """The shell command a run executes: the spec's `run`, or the runtime's trainer for a model
    (with the config `train_config` wrote to the run folder)."""
    if spec.run:
        return spec.run
    return f"{suanli_command()} train {shlex.quote(str(run_dir / 'train.yaml'))}"


def suanli_command() -> str:
    """The `suanli` CLI of this installation, as a shell word (its console script, or python -c)."""
    script = Path(sys.executable).with_name("suanli")
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -c 'from suanli.cli import app; app()'"


def _shape(placement: Placement | None) -> str:
    """`8 × a100-sxm-40gb on 1 node(s) of a100` (`CPU on …` for a CPU pool), for a job's history."""
    if placement is None:
        return "?"
    what = f"{placement.accelerators} × {placement.accelerator}" if placement.accelerator else "CPU"
    return f"{what} on {placement.nodes} node(s) of {placement.pool}"


@dataclass
class Controller:
    store: Store
    executor: Executor
    scheduler: SchedulerPort
    cluster: Cluster
    runs_dir: Path
    tick_s: float = 0.1
    clock: Callable[[], float] = time.time
    lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_sample_s: float = 0.0
    _last_allocation: dict[str, tuple[float, float]] = field(default_factory=dict)
    _last_poll_s: dict[int, float] = field(default_factory=dict)
    leadership: Leadership | None = None  # None: the only server on its store, always leading
    _leads: bool = False
    _known: set[int] = field(default_factory=set)  # jobs this server's scheduler was given
    _last_sync_s: float = 0.0

    # lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._try_lead():
            self.recover()
        self._thread = threading.Thread(target=self._loop, name="suanli-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self.leadership:
            self.leadership.release()

    @property
    def leading(self) -> bool:
        """Whether this server runs the scheduling loop (always, when it is alone on its store)."""
        return self.leadership is None or self._leads

    def _try_lead(self) -> bool:
        self._leads = self.leadership is not None and self.leadership.try_acquire()
        return self.leading

    def _loop(self) -> None:
        while not self.leading:  # another server leads: serve the API, wait to take over
            if self._stop.wait(LEADER_RETRY_S):
                return
            if self._try_lead():
                log.warning("this server now leads the scheduling loop")
                self.recover()
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # keep the control plane alive; the error is in the server log
                log.exception("controller step failed")
            self._stop.wait(self.tick_s)

    def recover(self) -> None:
        """Rebuild the scheduler's view from the store after a (re)start."""
        now = self.clock()
        with self.lock:
            for job in self.store.list_jobs(states={"pending", "starting", "running"}):
                spec = self.spec_of(job)
                if job.state == "pending" and (job.held or job.dependency or job.array_job_id):  # by step
                    continue
                if job.state == "pending":
                    self._requeue_after_restart(job, spec, now)
                    continue
                run = self.run_of(job)
                if job.state == "starting":
                    engine_id = self.executor.find(run)
                    if engine_id is None:
                        self.store.transition(
                            job.id, "starting", "pending", now, "not started before a restart"
                        )
                        self._requeue_after_restart(job, spec, now)
                        continue
                    self.store.transition(
                        job.id, "starting", "running", now, "found after a restart", engine_id=engine_id
                    )
                self._known.add(job.id)
                unaccounted = self.scheduler.adopt(job.id, spec, run.placement, now)
                if unaccounted:
                    self.store.set_fields(job.id, reason=unaccounted)

    def _requeue_after_restart(self, job: Job, spec: JobSpec, now: float) -> None:
        """Queue a pending job again; one the cluster can no longer hold (its pools shrank or went
        away while the server was down) fails with the scheduler's reason."""
        self._known.add(job.id)
        try:
            self.scheduler.submit(job.id, spec, self._candidates(job), job.submitted_at)
        except SpecError as exc:
            self.store.transition(job.id, "pending", "failed", now, f"unplaceable after a restart: {exc}")

    # submissions and cancellations -------------------------------------------------------------

    def submit(
        self,
        spec: JobSpec,
        candidates: list[Placement],
        plan: dict[str, Any] | None,
        dependency: str | None = None,
        user: str = ANONYMOUS,
    ) -> Job:
        """Store and queue a job (`user` submitted it); one with a `dependency` is queued by `step`
        once it is met."""
        self._check_parents(dependency)
        with self.lock:
            data = spec.model_dump(mode="json", by_alias=True)
            job = self.store.add_job(
                data, plan, self.clock(), [p.to_dict() for p in candidates], dependency, user
            )
            if not self.leading or dependency:  # the leader queues it from the store
                return job
            self._known.add(job.id)
            try:
                self.scheduler.submit(job.id, spec, candidates, job.submitted_at)
            except SpecError as exc:  # the scheduler refuses it: nothing may stay half-written
                self.store.discard(job.id)
                raise SpecError(f"resources: {str(exc).removeprefix(f'job {job.id}: ')}") from None
            return job

    def submit_array(
        self,
        spec: JobSpec,
        candidates: list[Placement],
        plan: dict[str, Any] | None,
        array: str,
        dependency: str | None = None,
        user: str = ANONYMOUS,
    ) -> list[Job]:
        """Store a job array (`sbatch --array`); `step` queues its tasks, at most its limit at once."""
        task_ids, limit = parse_array(array)
        self._check_parents(dependency)
        data = spec.model_dump(mode="json", by_alias=True)
        cands = [p.to_dict() for p in candidates]
        with self.lock:
            return self.store.add_array(data, plan, self.clock(), cands, dependency, user, task_ids, limit)

    def _check_parents(self, dependency: str | None) -> None:
        if dependency:
            parents = sorted({i for part in parse_dependency(dependency) for i in part.job_ids})
            missing = sorted(set(parents) - set(self.store.states_of(parents)))
            if missing:
                raise SpecError(f"dependency: job {missing[0]}: no such job")

    def cancel(self, job_id: int) -> Job | None:
        with self.lock:
            job = self.store.get(job_id)
            if job is None or job.state in TERMINAL_STATES:
                return job
            if job.state == "pending" and self.store.transition(
                job_id, "pending", "cancelled", self.clock(), "cancelled by the user"
            ):
                self.scheduler.cancel(job_id)
                return self.store.get(job_id)
            self.store.set_fields(job_id, cancel_requested=1)
        if not self.leading:  # the leader stops the run and frees its resources
            return self.store.get(job_id)
        deadline = time.monotonic() + LAUNCH_WAIT_S  # a launch in flight ends in a moment
        job = self.store.get(job_id)
        while job is not None and job.state == "starting" and time.monotonic() < deadline:
            time.sleep(0.02)
            job = self.store.get(job_id)
        if job is not None and job.state == "running":
            self.executor.cancel(self.run_of(job))
            self._finish(job, "cancelled", None, "cancelled by the user")
        return self.store.get(job_id)

    def hold(self, job_id: int) -> Job:
        """Slurm's `scontrol hold`: a pending job stays pending and is never started until released."""
        with self.lock:
            job = self._pending(job_id, "held")
            if not job.held:
                self.store.set_fields(job_id, held=1, reason="held by the user")
                self.scheduler.withdraw(job_id)
                self._known.discard(job_id)
        return self._get(job_id)

    def release(self, job_id: int) -> Job:
        """Slurm's `scontrol release`: a held job queues again, in its place by submission time."""
        with self.lock:
            job = self._pending(job_id, "released")
            if job.held:
                self.store.set_fields(job_id, held=0, reason="released by the user")
                if self.leading and not job.dependency and not job.array_job_id:  # else `step` queues it
                    self._requeue_after_restart(job, self.spec_of(job), self.clock())
        return self._get(job_id)

    def requeue(self, job_id: int) -> Job:
        """Slurm's `scontrol requeue`: stop a running job's run and queue the job again (its next
        attempt resumes from its checkpoints, if it keeps any)."""
        with self.lock:
            job = self._get(job_id)
            if job.state != "running":
                raise SpecError(f"job {job_id}: only a running job can be requeued (it is {job.state})")
            self.executor.cancel(self.run_of(job))
            if self.store.transition(job_id, "running", "pending", self.clock(), "requeued by the user"):
                self.scheduler.job_failed(job_id, self.clock())
        return self._get(job_id)

    def _get(self, job_id: int) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise SpecError(f"job {job_id}: no such job")
        return job

    def _pending(self, job_id: int, verb: str) -> Job:
        job = self._get(job_id)
        if job.state != "pending":
            raise SpecError(f"job {job_id}: only a pending job can be {verb} (it is {job.state})")
        return job

    # one iteration -------------------------------------------------------------------------------

    def step(self) -> None:
        now = self.clock()
        if self.leadership and time.monotonic() - self._last_sync_s >= SYNC_S:
            self._last_sync_s = time.monotonic()
            self._queue_jobs_from_other_servers()
        for job in self.store.list_jobs(states={"running"}):
            self._follow(job)
        self._queue_waiting()
        with self.lock:
            decisions = self.scheduler.tick(now)
        for decision in decisions:
            if decision.placement is None:
                self._preempt(decision.job_id)
            elif decision.action == "resize":
                self._resize(decision.job_id, decision.placement)
            else:
                self._launch(decision.job_id, decision.placement)
        allocation = self.pool_allocation()
        if allocation != self._last_allocation or now - self._last_sample_s >= POOL_SAMPLE_EVERY_S:
            self._last_sample_s, self._last_allocation = now, allocation
            self.store.add_pool_samples(now, allocation)

    def _queue_jobs_from_other_servers(self) -> None:
        """Pending jobs another server of the store accepted: queue them here, with their submit time."""
        with self.lock:
            for job in self.store.list_jobs(states={"pending"}):
                if job.id not in self._known and not job.held and not job.dependency and not job.array_job_id:
                    self._requeue_after_restart(job, self.spec_of(job), self.clock())

    def _queue_waiting(self) -> None:
        """Queue each waiting job whose dependency is now met and whose array is under its limit of
        tasks at once (Slurm's JobArrayTaskLimit); cancel one whose dependency never can be met."""
        waiting = self.store.waiting_to_queue()
        released: dict[int, set[int]] = {}  # array → its tasks started, or queued here
        for job in waiting:
            array = job.array_job_id
            if array is not None and job.array_limit is not None and array not in released:
                queued = {j.id for j in waiting if j.array_job_id == array and j.id in self._known}
                released[array] = self.store.array_started(array) | queued
        for job in waiting:
            if job.id in self._known:
                continue
            status, why = self._dependency_status(job)
            tasks = released.get(job.array_job_id or 0)
            if status == "ready" and tasks is not None:
                if len(tasks) >= (job.array_limit or 0):
                    status, why = (
                        "waiting",
                        f"JobArrayTaskLimit: {len(tasks)} tasks of array {job.array_job_id} run",
                    )
                else:
                    tasks.add(job.id)
            with self.lock:
                if status == "ready":
                    self._requeue_after_restart(job, self.spec_of(job), self.clock())
                elif status == "never":
                    self.store.transition(job.id, "pending", "cancelled", self.clock(), why)
                elif why != job.reason:
                    self.store.set_fields(job.id, reason=why)

    def _dependency_status(self, job: Job) -> tuple[str, str]:
        if not job.dependency:
            return "ready", ""
        parts = parse_dependency(job.dependency)
        parents = self.store.states_of([i for part in parts for i in part.job_ids])
        singleton = any(part.kind == "singleton" for part in parts)
        earlier = singleton and self.store.namesake_active(job.name, job.user, job.id)
        return dependency_status(parts, parents, earlier)

    def _follow(self, job: Job) -> None:
        run = self.run_of(job)
        self._ingest_metrics(job, run)
        if job.cancel_requested:
            self.executor.cancel(run)
            self._finish(job, "cancelled", None, "cancelled by the user")
            return
        last_s = self._last_poll_s.get(job.id, 0.0)
        if time.monotonic() - last_s < self.executor.poll_interval_s:
            return
        self._last_poll_s[job.id] = time.monotonic()
        status = self.executor.poll(run)
        if status.state in {"running", "pending"}:
            return
        self._last_poll_s.pop(job.id, None)
        cancelled = self.store.get(job.id)
        if cancelled is not None and cancelled.cancel_requested:
            self._finish(job, "cancelled", status.exit_code, "cancelled by the user")
            return
        self._ingest_metrics(job, run)
        if status.state == "succeeded":
            self._finish(job, "succeeded", 0, "")
        elif (
            self.spec_of(job).checkpoint is not None and self._failed_attempts(job) + 1 < MAX_FAILED_ATTEMPTS
        ):
            self._requeue(job, status.exit_code, status.reason or status.state)
        else:
            self._finish(job, "failed", status.exit_code, status.reason or status.state)

    def _failed_attempts(self, job: Job) -> int:
        """Earlier attempts of the job that failed; a preemption or a resize also starts a new attempt
        but is not a failure, so it is not counted against the job."""
        return sum(1 for h in self.store.history(job.id) if (h["reason"] or "").startswith(RECOVERING))

    def _requeue(self, job: Job, exit_code: int | None, reason: str) -> None:
        """A checkpointed job whose run failed goes back to the queue; its next attempt resumes
        from the newest checkpoint in the job's checkpoint folder."""
        why = (
            f"{RECOVERING} attempt {job.attempt} failed ({reason}); the next resumes from its last checkpoint"
        )
        with self.lock:
            if self.store.transition(job.id, "running", "pending", self.clock(), why, exit_code=exit_code):
                self.scheduler.job_failed(job.id, self.clock())

    def _finish(self, job: Job, state: str, exit_code: int | None, reason: str) -> None:
        with self.lock:
            if self.store.transition(job.id, "running", state, self.clock(), reason, exit_code=exit_code):
                self.scheduler.job_finished(job.id, self.clock())

    def _preempt(self, job_id: int) -> None:
        """The policy took the job's resources back: stop the run, queue the job again."""
        job = self.store.get(job_id)
        if job is None or job.state != "running":
            return
        self.executor.cancel(self.run_of(job))
        self.store.transition(
            job_id, "running", "pending", self.clock(), f"preempted by {self.scheduler.policy}"
        )

    def _resize(self, job_id: int, placement: Placement) -> None:
        """The policy moved a running job to another width or type: stop the run (its next attempt
        resumes from the job's newest checkpoint, as after a preemption), record the move, and start
        the next attempt on `placement`, a model job with the planner's plan for that width. Every
        engine does it as a stop and a start."""
        job = self.store.get(job_id)
        if job is not None and job.state == "running":
            placement = dataclasses.replace(
                placement, plan=plan_at_width(self.spec_of(job), self.cluster, placement)
            )
            before = Placement(**job.placement) if job.placement else None
            self.executor.cancel(self.run_of(job))
            self.store.transition(
                job_id,
                "running",
                "pending",
                self.clock(),
                f"resized by {self.scheduler.policy}: {_shape(before)} → {_shape(placement)},"
                " restarting from its last checkpoint",
            )
        self._launch(job_id, placement, resized=True)

    def _launch(self, job_id: int, placement: Placement, resized: bool = False) -> None:
        """Start the job's next attempt on `placement` (a resized job: with the plan for its new
        width only, never the one it was submitted with)."""
        job = self.store.get(job_id)
        if job is None or job.state != "pending":
            with self.lock:
                self.scheduler.job_finished(job_id, self.clock())
            return
        if job.held:  # held on another server of the store: out of this queue until released
            with self.lock:
                self.scheduler.withdraw(job_id)
                self._known.discard(job_id)
            return
        attempt = job.attempt + 1
        if not self.store.transition(
            job_id,
            "pending",
            "starting",
            self.clock(),
            f"placed on {placement.pool}",
            attempt=attempt,
            placement=placement.to_dict(),
            executor=self.executor.name,
        ):
            with self.lock:
                self.scheduler.job_finished(job_id, self.clock())
            return
        job.attempt, job.placement = attempt, placement.to_dict()
        run = self.run_of(job)
        try:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / "job.yaml").write_text(dump_yaml(run.spec))
            if run.spec.run is None:
                plan = placement.plan if resized else placement.plan or job.plan
                failures = self.cluster.failures_per_1k_gpu_month or 0.0
                config = train_config(run.spec, run.run_dir, plan, placement.accelerators, failures)
                (run.run_dir / "train.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            engine_id = self.executor.submit(run)
        except Exception as exc:  # whatever the engine raises fails this job, not the control plane
            reason = f"{self.executor.name} executor could not start the job: {exc}".splitlines()[0]
            with self.lock:
                self.store.transition(job_id, "starting", "failed", self.clock(), reason)
                self.scheduler.job_finished(job_id, self.clock())
            return
        self.store.transition(
            job_id,
            "starting",
            "running",
            self.clock(),
            f"{self.executor.name} id {engine_id}",
            engine_id=engine_id,
        )

    def _ingest_metrics(self, job: Job, run: Run) -> None:
        """Append the run's new complete metric lines (JSON objects) to the store."""
        path = run.run_dir / METRICS_FILE
        try:
            with path.open("rb") as handle:
                handle.seek(job.metrics_offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            return
        samples = []
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                samples.append((float(record.get("time", self.clock())), record))
        self.store.add_metrics(job.id, samples, job.metrics_offset + end)
        job.metrics_offset += end

    # views -------------------------------------------------------------------------------------------

    def run_of(self, job: Job) -> Run:
        spec = self.spec_of(job)
        run_dir = self.runs_dir / str(job.id) / str(job.attempt)
        placement = Placement(**job.placement) if job.placement else self._candidates(job)[0]
        command, store_id = job_command(spec, run_dir), self.store.store_id
        return Run(job.id, job.attempt, spec, placement, run_dir, command, job.engine_id, store_id=store_id)

    @staticmethod
    def _candidates(job: Job) -> list[Placement]:
        return [Placement(**p) for p in job.candidates]

    def pool_allocation(self) -> dict[str, tuple[float, float]]:
        """Per pool: (allocated, total) in accelerators, or in CPUs for a CPU-only pool."""
        with self.lock:
            snapshot = self.scheduler.snapshot()
        result = {}
        for pool, use in snapshot.items():
            if use["accelerators_total"]:
                result[pool] = (float(use["accelerators_allocated"]), float(use["accelerators_total"]))
            else:
                result[pool] = (float(use["cpus_allocated"]), float(use["cpus_total"]))
        return result

    def spec_of(self, job: Job) -> JobSpec:
        return JobSpec.model_validate(job.spec)
