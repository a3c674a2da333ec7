"""Ray Jobs: each run is a Ray job whose submission id is the run key, so a restarted server finds
it again; its entrypoint is the shared job script, its resources the scheduler's placement. A gang
that spans nodes is a placement group, one bundle per node (`ray_gang`), driven by the job."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys

from suanli.service.executors.base import (
    Run,
    RunStatus,
    engine_pools,
    finished_status,
    job_script,
    read_exit_code,
)
from suanli.service.executors.ray_gang import gang_spec
from suanli.service.executors.slices import gpus_per_node, ray_gpus, sliced_run
from suanli.spec import Cluster
from suanli.spec.errors import ExecutorError, one_line


class RayExecutor:
    poll_interval_s = 0.5  # each poll is an HTTP call to the Ray dashboard
    name = "ray"

    def __init__(self, address: str = "http://127.0.0.1:8265", cluster: Cluster | None = None) -> None:
        """`cluster`: a run on one of its pools also asks for the pool's custom resource (`{"H100": 8}`,
        `engine_pools`), so Ray starts it only on that pool's nodes."""
        from ray.job_submission import JobSubmissionClient

        self.pools = engine_pools(cluster) if cluster else {}
        try:
            self.client = JobSubmissionClient(address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(
                f"--ray-address: cannot reach Ray's job API at {address}: {one_line(str(exc))}"
            ) from None

    def submit(self, run: Run) -> str:
        run = sliced_run(run, self.name)  # fractional num_gpus below, the slice's env and node helper here
        run.run_dir.mkdir(parents=True, exist_ok=True)
        script = run.run_dir / "job.sh"
        script.write_text("#!/bin/bash\n" + job_script(run))
        placement = run.placement
        gpus = ray_gpus(run)
        engine = self.pools.get(placement.pool)
        resources = {engine.resource: float(gpus_per_node(run))} if engine and engine.resource else {}
        resources = resources if placement.accelerators else {}
        entry: dict[str, object] = {
            "entrypoint": f"bash {shlex.quote(str(script))}",
            "entrypoint_num_cpus": placement.cpus_per_node,
            "entrypoint_num_gpus": gpus or None,
            "entrypoint_resources": resources or None,
        }
        if placement.nodes > 1:  # the driver holds nothing; its placement group holds every node
            gang = run.run_dir / "gang.json"
            spec = gang_spec(script, run.exit_file, placement.nodes, placement.cpus_per_node, gpus, resources)
            gang.write_text(json.dumps(spec))
            module = "suanli.service.executors.ray_gang"
            entry = {"entrypoint": f"{shlex.quote(sys.executable)} -m {module} {shlex.quote(str(gang))}"}
        try:
            return self.client.submit_job(
                submission_id=run.key,
                runtime_env={"env_vars": run.env()},
                metadata={"suanli_job": str(run.job_id), "attempt": str(run.attempt)},
                **entry,  # type: ignore[arg-type]
            )
        except (RuntimeError, OSError) as exc:  # the job API's refusal, or the dashboard is gone
            raise ExecutorError(f"ray: submitting {run.key} failed: {one_line(str(exc))}") from None

    def find(self, run: Run) -> str | None:
        try:
            self.client.get_job_status(run.key)
        except RuntimeError:
            return None
        return run.key

    def poll(self, run: Run) -> RunStatus:
        if run.engine_id is None:
            return RunStatus("lost", reason="never submitted to Ray")
        try:
            info = self.client.get_job_info(run.engine_id)
        except RuntimeError:
            code = read_exit_code(run)
            if code is not None:
                return finished_status(code)
            return RunStatus("lost", reason=f"Ray no longer knows job {run.engine_id}")
        status = str(getattr(info.status, "value", info.status))
        if status == "PENDING":
            return RunStatus("pending")
        if status == "RUNNING":
            return RunStatus("running")
        code = read_exit_code(run)
        if code is not None:
            return finished_status(code)
        if status == "SUCCEEDED":
            return RunStatus("succeeded", 0)
        return RunStatus("failed", info.driver_exit_code, f"Ray job {status}: {info.message or ''}".strip())

    def cancel(self, run: Run) -> None:
        if run.engine_id is not None:
            with contextlib.suppress(RuntimeError):
                self.client.stop_job(run.engine_id)

    def logs(self, run: Run) -> str:
        if run.engine_id is None:
            return ""
        try:
            return self.client.get_job_logs(run.engine_id)
        except RuntimeError:
            return ""
