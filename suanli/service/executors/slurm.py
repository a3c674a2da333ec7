"""Slurm: one batch script per run (`#SBATCH` nodes, GRES, CPUs, memory, time, the job's own
pass-through options), submitted with `sbatch`, followed with `squeue` and the run's exit file.

`sacct` would need Slurm's accounting daemon, which many small sites (and our single-node test
set-up) do not run; the exit file written by the job script tells success from failure without it.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

from suanli.sched.launch import slurm_gres
from suanli.service.executors.base import (
    EnginePool,
    Run,
    RunStatus,
    engine_pools,
    finished_status,
    job_script,
    read_exit_code,
    read_log,
)
from suanli.service.executors.slices import grant_of, sliced_run
from suanli.spec import Cluster
from suanli.spec.errors import ExecutorError, one_line

PENDING_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "RESV_DEL_HOLD", "REQUEUE_HOLD", "SUSPENDED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def slurm_time(seconds: float) -> str:
    """Slurm's `--time` format, D-HH:MM:SS, rounded up to the minute."""
    minutes = math.ceil(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00"


def sbatch_options(
    run: Run, engine: EnginePool | None = None, hosts: list[str] | None = None
) -> dict[str, str]:
    """The `#SBATCH` options for a run; `engine` names its pool's partition and GRES type (else the
    GRES type is the accelerator's slug and the site's default partition takes it); `hosts` are the
    Slurm nodes the scheduler chose (`--nodelist`); the job's `slurm:` entries override the rest."""
    placement, spec = run.placement, run.spec
    options = {
        "job-name": run.key,
        "output": str(run.log_file),
        "nodes": str(placement.nodes),
        "ntasks-per-node": "1",
        "cpus-per-task": f"{max(1, math.ceil(placement.cpus_per_node))}",
    }
    if placement.accelerators:
        per_node = math.ceil(placement.accelerators / placement.nodes)
        gres_type = engine.resource if engine and engine.resource else placement.accelerator
        kind = f"{gres_type}:" if gres_type else ""
        grant = grant_of(run)  # a slice is requested as MIG / MPS / shard GRES, enforced by the site's Slurm
        options["gres"] = slurm_gres(grant) if grant else f"gpu:{kind}{per_node}"
    if spec.resources.memory_gb:
        options["mem"] = f"{math.ceil(spec.resources.memory_gb)}G"
    if spec.walltime_s:
        options["time"] = slurm_time(spec.walltime_s)
    if engine:
        options["partition"] = engine.partition
    if hosts:
        options["nodelist"] = ",".join(hosts)
    options.update({key: str(value) for key, value in spec.slurm.items()})
    return options


def batch_script(run: Run, engine: EnginePool | None = None, hosts: list[str] | None = None) -> str:
    options = sbatch_options(run, engine, hosts)
    header = "\n".join(f"#SBATCH --{key}={value}" for key, value in options.items())
    return f"#!/bin/bash\n{header}\n\n{job_script(sliced_run(run, 'slurm'))}"


class SlurmExecutor:
    poll_interval_s = 1.0  # squeue asks slurmctld: once a second per run is plenty
    name = "slurm"

    def __init__(
        self,
        partition: str | None = None,
        slurm_conf: str | Path | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        """`cluster`: each of its pools goes out to its own partition and GRES type (`engine_pools`);
        without one, every run goes to `partition` (None: the site's default)."""
        self.pools = engine_pools(cluster) if cluster else {}
        self.default = EnginePool(partition, None) if partition else None
        self.env = {**os.environ, **({"SLURM_CONF": str(slurm_conf)} if slurm_conf else {})}
        self._hosts: dict[str, list[str]] = {}

    def hosts_of(self, run: Run, engine: EnginePool | None) -> list[str] | None:
        """The Slurm nodes of the scheduler's choice: node i of a pool is the i-th node `sinfo` lists
        for its partition. None (Slurm picks) without a cluster file, or when the partition has fewer
        nodes than the pool's file says."""
        indices = run.placement.node_indices()
        if engine is None or run.placement.pool not in self.pools or not indices:
            return None
        if engine.partition not in self._hosts:
            listed = self._run("sinfo", "-h", "-N", "-p", engine.partition, "-o", "%N")
            self._hosts[engine.partition] = (
                sorted(set(listed.stdout.split())) if listed.returncode == 0 else []
            )
        hosts = self._hosts[engine.partition]
        return [hosts[i] for i in indices] if max(indices) < len(hosts) else None

    def _run(self, *command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=cwd, timeout=30)
        except FileNotFoundError:
            raise ExecutorError(f"slurm: {command[0]} not found: is Slurm installed on this host?") from None
        except subprocess.TimeoutExpired:
            raise ExecutorError(f"slurm: {command[0]} gave no answer in 30 s: is slurmctld up?") from None

    def submit(self, run: Run) -> str:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        script = run.run_dir / "job.sbatch"
        engine = self.pools.get(run.placement.pool, self.default)
        script.write_text(batch_script(run, engine, self.hosts_of(run, engine)))
        result = self._run("sbatch", "--parsable", str(script), cwd=run.run_dir)
        if result.returncode != 0:
            raise ExecutorError(f"sbatch: {one_line(result.stderr or result.stdout) or 'refused the job'}")
        return result.stdout.strip().split(";")[0]

    def find(self, run: Run) -> str | None:
        result = self._run("squeue", "-h", "-t", "all", f"--name={run.key}", "-o", "%i")
        ids = result.stdout.split()
        return ids[0] if result.returncode == 0 and ids else None

    def poll(self, run: Run) -> RunStatus:
        code = read_exit_code(run)
        if code is not None:
            return finished_status(code)
        if run.engine_id is None:
            return RunStatus("lost", reason="never submitted to Slurm")
        result = self._run("squeue", "-h", "-t", "all", "-j", run.engine_id, "-o", "%T")
        state = result.stdout.strip() if result.returncode == 0 else ""
        if state in PENDING_STATES:
            return RunStatus("pending")
        if state in RUNNING_STATES:
            return RunStatus("running")
        code = read_exit_code(run)
        if code is not None:
            return finished_status(code)
        if state:
            return RunStatus("failed", reason=f"Slurm job {run.engine_id} ended {state}")
        return RunStatus(
            "lost", reason=f"Slurm no longer knows job {run.engine_id} and it left no exit status"
        )

    def cancel(self, run: Run) -> None:
        if run.engine_id is not None:
            self._run("scancel", run.engine_id)

    def logs(self, run: Run) -> str:
        return read_log(run)
