"""The one interface every execution engine implements: submit, poll, cancel, logs.

The scheduler decides where a job runs; an executor only starts it there and reports on it. Every
engine runs the same job script (`job_script`), which records the command's exit status in the
run folder through a rename, so a finished run is recognisable even after the server restarted.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from suanli.spec import Cluster, JobSpec

EXIT_FILE = "exit_code"
LOG_FILE = "log"
METRICS_FILE = "metrics.jsonl"

RunState = Literal["pending", "running", "succeeded", "failed", "lost"]


@dataclass
class Placement:
    """Where the scheduler put a job: one pool, a number of nodes, accelerators and CPUs in all."""

    pool: str
    nodes: int
    accelerators: int = 0
    accelerator: str | None = None
    cpus_per_node: float = 1.0
    runtime_s: float | None = None  # the planner's predicted time to train here (None: not planned)
    restart_overhead_s: float = 0.0  # what each (re)start here costs before progress (a trace's figure)
    throughput: float | None = None  # a profiled throughput table's entry for this type (Gavel's input)
    checkpoint_s: float = 0.0  # what one checkpoint save stalls the run (a trace's figure)
    comm_share: float = 0.0  # its step's share in gradient sync, packed (a trace's profile)
    # an elastic job's goodput profile (`suanli.sched.goodput` app) and its declared work in that app's
    # steps at its initial batch: with them a job whose spec gives `count..count_max` may be resized
    goodput_app: str | None = None
    goodput_steps: float | None = None
    plan: dict[str, Any] | None = None  # the planner's best plan on this pool and count: the run's
    nodelist: list[str] = field(default_factory=list)  # the nodes the scheduler chose (`pool-i`)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    def node_indices(self) -> list[int]:
        """The chosen nodes' places in their pool (the scheduler names them `pool-i`)."""
        return [int(name.rsplit("-", 1)[1]) for name in self.nodelist]


@dataclass
class Run:
    """One attempt of a job on an engine. Its key is deterministic (store, job, attempt), so a
    restarted server can find the run on the engine even if it died between starting it and
    recording the engine's id, and never takes another store's run for its own."""

    job_id: int
    attempt: int
    spec: JobSpec
    placement: Placement
    run_dir: Path
    command: str
    engine_id: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    store_id: str = ""  # the store's id: two servers on two stores share one Slurm or Ray cluster

    @property
    def key(self) -> str:
        store = f"{self.store_id}-" if self.store_id else ""
        return f"suanli-{store}{self.job_id}-{self.attempt}"

    @property
    def exit_file(self) -> Path:
        return self.run_dir / EXIT_FILE

    @property
    def log_file(self) -> Path:
        return self.run_dir / LOG_FILE

    def env(self) -> dict[str, str]:
        """What a job learns about itself; the runtime reports metrics to SUANLI_METRICS_FILE."""
        return {
            "SUANLI_JOB_ID": str(self.job_id),
            "SUANLI_ATTEMPT": str(self.attempt),
            "SUANLI_RUN_DIR": str(self.run_dir),
            "SUANLI_METRICS_FILE": str(self.run_dir / METRICS_FILE),
            "SUANLI_POOL": self.placement.pool,
            "SUANLI_NUM_NODES": str(self.placement.nodes),
            "SUANLI_NUM_ACCELERATORS": str(self.placement.accelerators),
            **self.extra_env,
            **self.spec.envs,
        }


@dataclass
class RunStatus:
    state: RunState
    exit_code: int | None = None
    reason: str = ""


class Executor(Protocol):
    """An execution engine. When the engine refuses or cannot be reached, a method raises
    `ExecutorError` with one line naming the engine and its reason (the controller fails that job,
    not the control plane); a run the engine merely forgot is `RunStatus("lost")`."""

    name: str
    poll_interval_s: float  # the least time between two polls of one run (0: every control-loop tick)

    def submit(self, run: Run) -> str:
        """Start the run; return the engine's id for it (pid, Slurm job id, Ray submission id)."""

    def poll(self, run: Run) -> RunStatus:
        """The run's state now. `lost`: the engine no longer knows it and it left no exit status."""

    def find(self, run: Run) -> str | None:
        """The engine's id for a run started under `run.key`, or None if the engine never got it."""

    def cancel(self, run: Run) -> None:
        """Stop the run (idempotent)."""

    def logs(self, run: Run) -> str:
        """Everything the run printed so far."""


def job_script(run: Run) -> str:
    """The bash body every engine runs: environment, working folder, setup, the command, and the
    exit status written atomically (write, then rename) to the run folder. A stopped run leaves no
    exit status (and no stray process: the stop reaches the script's process group)."""
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in run.env().items())
    workdir = f"cd {shlex.quote(run.spec.workdir)}\n" if run.spec.workdir else ""
    setup = run.spec.setup or "true"
    exit_file = shlex.quote(str(run.exit_file))
    return (
        f"{exports}\n{workdir}"
        # the run is started in the background so that a stop signal is handled at once, and
        # passed to the whole process group (the engine made the script its leader)
        "trap 'trap - TERM INT; kill -TERM 0' TERM INT\n"
        f"( {setup}\n) && ( {run.command}\n) &\n"
        "wait $!\n"
        "code=$?\n"
        # a rank of a gang spanning nodes leaves the exit status to its driver (executors/ray_gang.py)
        '[ -n "${SUANLI_NODE_RANK:-}" ] || '
        f"{{ echo $code > {exit_file}.tmp && mv {exit_file}.tmp {exit_file}; }}\n"
        "exit $code\n"
    )


def read_exit_code(run: Run) -> int | None:
    try:
        return int(run.exit_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def finished_status(code: int) -> RunStatus:
    if code == 0:
        return RunStatus("succeeded", 0)
    return RunStatus("failed", code, f"exit status {code}")


def read_log(run: Run) -> str:
    try:
        return run.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class EnginePool:
    """A pool as an engine names it: the Slurm partition, and the accelerators' GRES type / Ray resource."""

    partition: str
    resource: str | None


def engine_pools(cluster: Cluster) -> dict[str, EnginePool]:
    """Every pool of a cluster file → its engine names (`Pool.partition`, `Pool.gres_type`; by default
    the pool's name and the accelerator's slug)."""
    result = {}
    for pool in cluster.pools:
        accelerator = cluster.node_type_of(pool.name).accelerator
        result[pool.name] = EnginePool(pool.partition or pool.name, pool.gres_type or accelerator)
    return result
