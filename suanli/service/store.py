"""The durable job store: jobs, state transitions, placements, checkpoints, metrics, pool samples.

SQLAlchemy over SQLite (default, WAL + synchronous=FULL) or PostgreSQL (by URL). Every change of
a job's state is one transaction that compare-and-sets the state and appends the transition, so
a `kill -9` at any moment leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Integer,
    Select,
    String,
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult, Engine, ExceptionContext
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from suanli.spec.errors import SpecError, StoreError

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATES = frozenset({"pending", "starting", "running"})
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"starting", "cancelled", "failed"}),
    "starting": frozenset({"running", "pending", "failed", "cancelled", "succeeded"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "pending"}),
}


class Base(DeclarativeBase):
    pass


NAME_MAX = 200  # the longest job name the jobs table holds
POOL_MAX = 100  # the longest pool name the pool samples hold
ID_MAX = 2**31 - 1  # the largest job id (PostgreSQL's INTEGER)
ANONYMOUS = "anonymous"  # the submitter of a job sent without a token the service maps to a user


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    kind: Mapped[str] = mapped_column(String(20))
    queue: Mapped[str] = mapped_column(String(100), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), index=True)
    spec: Mapped[dict] = mapped_column(JSON)
    plan: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    placement: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    candidates: Mapped[list | None] = mapped_column(JSON, nullable=True)  # placements admission allows
    executor: Mapped[str | None] = mapped_column(String(20), nullable=True)
    engine_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # `suanli hold`: never started
    dependency: Mapped[str | None] = mapped_column(String(1000), nullable=True)  # `afterok:3,singleton`
    user: Mapped[str] = mapped_column(String(100), default=ANONYMOUS, server_default=ANONYMOUS)
    array_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # its first task
    array_task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    array_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)  # `%N`: tasks running at once
    metrics_offset: Mapped[int] = mapped_column(Integer, default=0)
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TransitionRow(Base):
    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")


class MetricRow(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[float] = mapped_column(Float)
    values: Mapped[dict] = mapped_column(JSON)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str] = mapped_column(Text)


class MetaRow(Base):
    """Facts about the store itself: `store_id`, made once when the store is created."""

    __tablename__ = "store_meta"
    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class PoolSampleRow(Base):
    __tablename__ = "pool_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    pool: Mapped[str] = mapped_column(String(POOL_MAX))
    allocated: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)


@dataclass
class Job:
    """A job as the rest of the service sees it (a detached copy of its row)."""

    id: int
    name: str
    kind: str
    queue: str
    priority: int
    state: str
    spec: dict[str, Any]
    plan: dict[str, Any] | None
    placement: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    executor: str | None
    engine_id: str | None
    attempt: int
    exit_code: int | None
    reason: str
    cancel_requested: bool
    held: bool
    dependency: str | None
    user: str
    array_job_id: int | None
    array_task_id: int | None
    array_limit: int | None
    metrics_offset: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        return cls(
            id=row.id,
            name=row.name,
            kind=row.kind,
            queue=row.queue,
            priority=row.priority,
            state=row.state,
            spec=row.spec,
            plan=row.plan,
            placement=row.placement,
            candidates=row.candidates or [],
            executor=row.executor,
            engine_id=row.engine_id,
            attempt=row.attempt,
            exit_code=row.exit_code,
            reason=row.reason,
            cancel_requested=bool(row.cancel_requested),
            held=bool(row.held),
            dependency=row.dependency,
            user=row.user,
            array_job_id=row.array_job_id,
            array_task_id=row.array_task_id,
            array_limit=row.array_limit,
            metrics_offset=row.metrics_offset,
            submitted_at=row.submitted_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "history" or v}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _add_missing_columns(engine: Engine) -> None:
    """A store made by an older version: add the jobs columns it lacks (each new column is nullable
    or has a server default, so existing rows stay valid)."""
    present = {column["name"] for column in inspect(engine).get_columns("jobs")}
    with engine.begin() as connection:
        for column in JobRow.__table__.columns:
            if column.name in present:
                continue
            default = column.server_default
            ddl = f"ALTER TABLE jobs ADD COLUMN {column.name} {column.type.compile(engine.dialect)}"
            if default is not None:
                ddl += f" DEFAULT '{default.arg}'"
            connection.execute(text(ddl))


def normalise_url(url: str) -> str:
    """`postgresql://…` means psycopg 3 (the driver we ship); a bare path means SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _raise_store_error(context: ExceptionContext) -> None:
    """The database cannot be reached, is locked or cannot write (SQLAlchemy's OperationalError /
    InterfaceError): a StoreError naming the URL without the password. Other errors are bugs and
    stay as they are."""
    if context.engine is not None and isinstance(
        context.sqlalchemy_exception, (OperationalError, InterfaceError)
    ):
        reason = str(context.original_exception).strip().splitlines()[0]
        raise StoreError(f"store at {_where(context.engine)}: {reason}")


def _matching(states: set[str] | frozenset[str] | None, queue: str | None, kind: str | None) -> Select:
    """The jobs in any of `states`, of `queue` and of `kind` (a filter left out matches every job)."""
    query = select(JobRow)
    if states:
        query = query.where(JobRow.state.in_(sorted(states)))
    if queue:
        query = query.where(JobRow.queue == queue)
    if kind:
        query = query.where(JobRow.kind == kind)
    return query


class Store:
    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        is_sqlite = self.url.startswith("sqlite")
        try:
            self.engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 10} if is_sqlite else {},
                pool_pre_ping=not is_sqlite,
            )
        except Exception as exc:  # a malformed URL or a missing driver
            raise SpecError(f"--db: cannot use {url!r}: {exc}") from None
        if is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"--db: cannot open the store at {_where(self.engine)}: {reason}") from None
        event.listen(self.engine, "handle_error", _raise_store_error)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.store_id = self._store_id()

    def _store_id(self) -> str:
        """This store's id (8 hex digits), made by the first server to open it: engines see runs of
        several stores (one Slurm, one Ray cluster), so a run's key names its store."""
        for _ in range(2):
            with self._sessions() as session:
                row = session.get(MetaRow, "store_id")
                if row is not None:
                    return row.value
                session.add(MetaRow(key="store_id", value=uuid.uuid4().hex[:8]))
                try:
                    session.commit()
                except IntegrityError:  # another server made it first: read theirs
                    session.rollback()
        raise StoreError("store: cannot read or make its store_id")

    def close(self) -> None:
        self.engine.dispose()

    # jobs ---------------------------------------------------------------------------------------

    def add_job(
        self,
        spec: dict[str, Any],
        plan: dict[str, Any] | None,
        now: float | None = None,
        candidates: list[dict[str, Any]] | None = None,
        dependency: str | None = None,
        user: str = ANONYMOUS,
    ) -> Job:
        """Insert an accepted job (the user's spec as submitted, the planner's plan, the placements
        admission allows) and its first transition in one transaction."""
        now = time.time() if now is None else now
        with self._sessions.begin() as session:
            return Job.from_row(self._insert(session, spec, plan, now, candidates, dependency, user))

    def add_array(
        self,
        spec: dict[str, Any],
        plan: dict[str, Any] | None,
        now: float,
        candidates: list[dict[str, Any]],
        dependency: str | None,
        user: str,
        task_ids: list[int],
        limit: int | None,
    ) -> list[Job]:
        """A job array, all its tasks in one transaction: each task a job whose `envs` carry its
        index and the array's id (the first task's job id), as Slurm's SLURM_ARRAY_* do."""
        with self._sessions.begin() as session:
            rows = []
            for task_id in task_ids:
                envs = {**spec.get("envs", {}), "SUANLI_ARRAY_TASK_ID": str(task_id)}
                row = self._insert(session, {**spec, "envs": envs}, plan, now, candidates, dependency, user)
                row.array_task_id, row.array_limit = task_id, limit
                rows.append(row)
            for row in rows:
                row.array_job_id = rows[0].id
                row.spec = {**row.spec, "envs": {**row.spec["envs"], "SUANLI_ARRAY_JOB_ID": str(rows[0].id)}}
            session.flush()
            return [Job.from_row(row) for row in rows]

    @staticmethod
    def _insert(
        session: Session,
        spec: dict[str, Any],
        plan: dict[str, Any] | None,
        now: float,
        candidates: list[dict[str, Any]] | None,
        dependency: str | None,
        user: str,
    ) -> JobRow:
        row = JobRow(
            name=spec["name"],
            kind=spec.get("kind", "training"),
            queue=spec.get("queue", "default"),
            priority=spec.get("priority", 0),
            state="pending",
            spec=spec,
            plan=plan,
            candidates=candidates,
            attempt=0,
            reason="",
            cancel_requested=0,
            held=0,
            dependency=dependency,
            user=user,
            metrics_offset=0,
            submitted_at=now,
        )
        session.add(row)
        session.flush()
        session.add(TransitionRow(job_id=row.id, from_state=None, to_state="pending", at=now))
        return row

    def discard(self, job_id: int) -> None:
        """Remove a job that was never acknowledged (its submission failed after the insert)."""
        with self._sessions.begin() as session:
            session.execute(delete(TransitionRow).where(TransitionRow.job_id == job_id))
            session.execute(delete(JobRow).where(JobRow.id == job_id))

    def get(self, job_id: int, with_history: bool = False) -> Job | None:
        """The job; with its history, a pair read so that the history ends in the job's state
        (SQLite's driver does not open a read transaction, so a writer may land in between)."""
        for _ in range(5):
            with self._sessions() as session:
                row = session.get(JobRow, job_id)
                if row is None:
                    return None
                job = Job.from_row(row)
                if not with_history:
                    return job
                job.history = self._history(session, job_id)
            if job.history and job.history[-1]["to"] == job.state:
                break
        return job

    def list_jobs(
        self,
        states: set[str] | frozenset[str] | None = None,
        queue: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        query = _matching(states, queue, kind).order_by(JobRow.id.desc() if limit else JobRow.id)
        if limit:
            query = query.limit(limit)
        with self._sessions() as session:
            jobs = [Job.from_row(row) for row in session.scalars(query)]
        return sorted(jobs, key=lambda job: job.id)

    def states_of(self, job_ids: list[int]) -> dict[int, str]:
        with self._sessions() as session:
            rows = session.execute(select(JobRow.id, JobRow.state).where(JobRow.id.in_(job_ids)))
            return {job_id: state for job_id, state in rows}

    def waiting_to_queue(self) -> list[Job]:
        """Pending jobs, not held, that name a dependency or are an array's tasks (the controller
        queues each once it may)."""
        query = select(JobRow).where(
            JobRow.state == "pending",
            JobRow.held == 0,
            JobRow.dependency.is_not(None) | JobRow.array_job_id.is_not(None),
        )
        with self._sessions() as session:
            return [Job.from_row(row) for row in session.scalars(query.order_by(JobRow.id))]

    def namesake_active(self, name: str, user: str, job_id: int) -> bool:
        """Whether a job `user` submitted before `job_id` under the same name is still pending or running."""
        query = select(JobRow.id).where(
            JobRow.name == name,
            JobRow.user == user,
            JobRow.id < job_id,
            JobRow.state.in_(sorted(ACTIVE_STATES)),
        )
        with self._sessions() as session:
            return session.scalar(query.limit(1)) is not None

    def array_started(self, array_job_id: int) -> set[int]:
        """The array's tasks that are starting or running."""
        query = select(JobRow.id).where(
            JobRow.array_job_id == array_job_id, JobRow.state.in_(["starting", "running"])
        )
        with self._sessions() as session:
            return set(session.scalars(query))

    def count_by_state(self) -> dict[str, int]:
        with self._sessions() as session:
            rows = session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
            return {state: count for state, count in rows}

    def transition(
        self,
        job_id: int,
        from_state: str,
        to_state: str,
        now: float | None = None,
        reason: str = "",
        **fields: Any,
    ) -> bool:
        """Move a job from `from_state` to `to_state` with `fields` set, atomically.

        Returns False (and changes nothing) when the job is no longer in `from_state`: someone else
        (a cancel, a restart) moved it first."""
        if to_state not in ALLOWED_TRANSITIONS.get(from_state, frozenset()):
            raise ValueError(f"job {job_id}: {from_state} → {to_state} is not a valid transition")
        now = time.time() if now is None else now
        values: dict[str, Any] = {"state": to_state, **fields}
        if reason:
            values["reason"] = reason
        if to_state == "running":
            values.setdefault("started_at", now)
        if to_state in TERMINAL_STATES:
            values.setdefault("finished_at", now)
        with self._sessions.begin() as session:
            result = session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.state == from_state).values(**values)
            )
            if cast(CursorResult[Any], result).rowcount != 1:  # an UPDATE's result is a cursor result
                return False
            session.add(
                TransitionRow(job_id=job_id, from_state=from_state, to_state=to_state, at=now, reason=reason)
            )
        return True

    def set_fields(self, job_id: int, **fields: Any) -> None:
        with self._sessions.begin() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**fields))

    def history(self, job_id: int) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return self._history(session, job_id)

    @staticmethod
    def _history(session: Session, job_id: int) -> list[dict[str, Any]]:
        query = select(TransitionRow).where(TransitionRow.job_id == job_id).order_by(TransitionRow.id)
        return [
            {"from": t.from_state, "to": t.to_state, "at": t.at, "reason": t.reason}
            for t in session.scalars(query)
        ]

    def recent_transitions(self, limit: int = 50, to_states: set[str] | None = None) -> list[dict[str, Any]]:
        query = select(TransitionRow, JobRow.name).join(JobRow, JobRow.id == TransitionRow.job_id)
        if to_states:
            query = query.where(TransitionRow.to_state.in_(sorted(to_states)))
        query = query.order_by(TransitionRow.id.desc()).limit(limit)
        with self._sessions() as session:
            return [
                {
                    "job_id": t.job_id,
                    "name": name,
                    "from": t.from_state,
                    "to": t.to_state,
                    "at": t.at,
                    "reason": t.reason,
                }
                for t, name in session.execute(query)
            ]

    # metrics and checkpoints ------------------------------------------------------------------------

    def add_metrics(self, job_id: int, samples: list[tuple[float, dict[str, Any]]], new_offset: int) -> None:
        """Append metric samples and advance the job's read offset in the same transaction."""
        with self._sessions.begin() as session:
            for at, values in samples:
                session.add(MetricRow(job_id=job_id, at=at, values=values))
                if "checkpoint" in values:
                    step = values.get("step")
                    session.add(
                        CheckpointRow(
                            job_id=job_id,
                            at=at,
                            step=int(step) if step is not None else None,
                            path=str(values["checkpoint"]),
                        )
                    )
            session.execute(update(JobRow).where(JobRow.id == job_id).values(metrics_offset=new_offset))

    def metrics(self, job_id: int, limit: int = 500) -> list[dict[str, Any]]:
        query = select(MetricRow).where(MetricRow.job_id == job_id).order_by(MetricRow.id.desc()).limit(limit)
        with self._sessions() as session:
            rows = list(session.scalars(query))
        return [{"at": r.at, **r.values} for r in reversed(rows)]

    def latest_metrics(self, job_ids: list[int]) -> dict[int, dict[str, Any]]:
        if not job_ids:
            return {}
        newest = (
            select(func.max(MetricRow.id)).where(MetricRow.job_id.in_(job_ids)).group_by(MetricRow.job_id)
        )
        with self._sessions() as session:
            rows = session.scalars(select(MetricRow).where(MetricRow.id.in_(newest)))
            return {r.job_id: {"at": r.at, **r.values} for r in rows}

    def checkpoints(self, job_id: int) -> list[dict[str, Any]]:
        query = select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.id)
        with self._sessions() as session:
            return [{"at": c.at, "step": c.step, "path": c.path} for c in session.scalars(query)]

    # pools ------------------------------------------------------------------------------------------

    def add_pool_samples(self, at: float, samples: dict[str, tuple[float, float]]) -> None:
        with self._sessions.begin() as session:
            for pool, (allocated, total) in samples.items():
                session.add(PoolSampleRow(at=at, pool=pool, allocated=allocated, total=total))

    def pool_history(self, since: float) -> dict[str, list[list[float]]]:
        query = select(PoolSampleRow).where(PoolSampleRow.at >= since).order_by(PoolSampleRow.id)
        history: dict[str, list[list[float]]] = {}
        with self._sessions() as session:
            for row in session.scalars(query):
                ratio = row.allocated / row.total if row.total else 0.0
                history.setdefault(row.pool, []).append([row.at, round(ratio, 4)])
        return history

    # operator's view ---------------------------------------------------------------------------------

    def page_jobs(
        self,
        states: set[str] | frozenset[str] | None = None,
        queue: str | None = None,
        kind: str | None = None,
        pool: str | None = None,
        offset: int = 0,
        limit: int = 50,
        newest_first: bool = True,
    ) -> tuple[int, list[Job]]:
        """One page of the jobs matching the filters, over the whole store, and how many match."""
        query = _matching(states, queue, kind)
        if pool:
            query = query.where(JobRow.placement["pool"].as_string() == pool)
        order = JobRow.id.desc() if newest_first else JobRow.id
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(order).offset(offset).limit(limit))
            return total, [Job.from_row(row) for row in rows]

    def history_page(
        self,
        states: set[str] | None = None,
        user: str | None = None,
        since: float | None = None,
        until: float | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> tuple[int, list[Job]]:
        """Jobs alive at some moment of [since, until] (submitted by `until`, not finished before
        `since`), as `sacct -S/-E` selects them, oldest first, a page at a time, and how many match."""
        query = select(JobRow)
        if states:
            query = query.where(JobRow.state.in_(sorted(states)))
        if user:
            query = query.where(JobRow.user == user)
        if since is not None:
            query = query.where(JobRow.finished_at.is_(None) | (JobRow.finished_at >= since))
        if until is not None:
            query = query.where(JobRow.submitted_at <= until)
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(JobRow.id).offset(offset).limit(limit))
            return total, [Job.from_row(row) for row in rows]

    def count_by_queue_state(self) -> dict[str, dict[str, int]]:
        """{queue: {state: jobs}} over the whole store."""
        counts: dict[str, dict[str, int]] = {}
        with self._sessions() as session:
            query = select(JobRow.queue, JobRow.state, func.count()).group_by(JobRow.queue, JobRow.state)
            for queue, state, count in session.execute(query):
                counts.setdefault(queue, {})[state] = count
        return counts

    def pending_depth(self, since: float) -> list[list[float]]:
        """[[time, jobs pending]] from `since` until now: today's count, unwound through the
        transitions into and out of `pending` made since then."""
        depth = self.count_by_state().get("pending", 0)
        query = (
            select(TransitionRow.at, TransitionRow.from_state, TransitionRow.to_state)
            .where(TransitionRow.at >= since)
            .where((TransitionRow.to_state == "pending") | (TransitionRow.from_state == "pending"))
            .order_by(TransitionRow.id.desc())
        )
        points = []
        with self._sessions() as session:
            for at, from_state, to_state in session.execute(query):
                points.append([at, float(depth)])
                depth += (from_state == "pending") - (to_state == "pending")
        points.reverse()
        return [[since, float(depth)], *points] if points else []

    def restarts(self, job_ids: list[int]) -> dict[int, int]:
        """Times each job went back from running to pending (a failure it recovered from, or a
        preemption)."""
        if not job_ids:
            return {}
        query = (
            select(TransitionRow.job_id, func.count())
            .where(TransitionRow.job_id.in_(job_ids))
            .where(TransitionRow.from_state == "running", TransitionRow.to_state == "pending")
            .group_by(TransitionRow.job_id)
        )
        with self._sessions() as session:
            return {job_id: count for job_id, count in session.execute(query)}

    def transitions_between(self, since: float, to_states: set[str]) -> list[dict[str, Any]]:
        """State changes into `to_states` since `since`, oldest first (at most 2,000, the newest)."""
        query = (
            select(TransitionRow)
            .where(TransitionRow.at >= since, TransitionRow.to_state.in_(sorted(to_states)))
            .where(TransitionRow.from_state.is_not(None))
            .order_by(TransitionRow.id.desc())
            .limit(2000)
        )
        with self._sessions() as session:
            rows = list(session.scalars(query))
        return [
            {"job_id": t.job_id, "from": t.from_state, "to": t.to_state, "at": t.at, "reason": t.reason}
            for t in reversed(rows)
        ]

    def transition_counts(self) -> list[tuple[str, str | None, str, int]]:
        """(queue, from state, to state, how many) over every transition in the store: the counters
        /metrics exports (monotonic while the store keeps its history)."""
        query = (
            select(JobRow.queue, TransitionRow.from_state, TransitionRow.to_state, func.count())
            .select_from(TransitionRow)
            .join(JobRow, JobRow.id == TransitionRow.job_id)
            .group_by(JobRow.queue, TransitionRow.from_state, TransitionRow.to_state)
        )
        with self._sessions() as session:
            return [(queue, src, dst, count) for queue, src, dst, count in session.execute(query)]

    def start_latency_buckets(self, bounds_s: tuple[float, ...]) -> tuple[list[int], int, float]:
        """Time from submission to a job's first start, as a cumulative histogram: (jobs at or under
        each bound, jobs started, the sum of their latencies in seconds), counted by the database."""
        first = (
            select((func.min(TransitionRow.at) - JobRow.submitted_at).label("latency"))
            .select_from(TransitionRow)
            .join(JobRow, JobRow.id == TransitionRow.job_id)
            .where(TransitionRow.to_state == "starting")
            .group_by(TransitionRow.job_id, JobRow.submitted_at)
            .subquery()
        )
        columns = [func.sum(case((first.c.latency <= bound, 1), else_=0)) for bound in bounds_s]
        with self._sessions() as session:
            row = session.execute(select(*columns, func.count(), func.sum(first.c.latency))).one()
        return [int(n or 0) for n in row[: len(bounds_s)]], int(row[-2]), float(row[-1] or 0.0)
