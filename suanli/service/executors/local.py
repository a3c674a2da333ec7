"""Local processes: the default engine, for the one-node pool of `suanli up`.

Each run is `bash job.sh` in its own session (so cancelling kills the whole process group and a
server crash does not take the job with it). After a restart the run is found again by its pid,
checked against the script path in /proc so a reused pid is never mistaken for the job."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from suanli.service.executors.base import (
    Run,
    RunStatus,
    finished_status,
    job_script,
    read_exit_code,
    read_log,
)
from suanli.service.executors.slices import sliced_run
from suanli.spec.errors import ExecutorError

CANCEL_GRACE_S = 5.0


def _is_our_process(pid: int, script: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    zombie = status.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and str(script).encode() in cmdline


class LocalExecutor:
    poll_interval_s = 0.0
    name = "local"

    def __init__(self) -> None:
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def submit(self, run: Run) -> str:
        run = sliced_run(run, self.name)  # a sliced job sees only its slice (docs/sharing.md)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        script = run.run_dir / "job.sh"
        script.write_text("#!/bin/bash\n" + job_script(run))
        with open(run.log_file, "ab") as log:
            try:
                child = subprocess.Popen(
                    ["bash", str(script)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=run.run_dir,
                    env={**os.environ, **run.env()},
                    start_new_session=True,
                )
            except OSError as exc:
                raise ExecutorError(f"local: cannot start {script}: {exc.strerror}") from None
        self._children[run.key] = child
        (run.run_dir / "pid").write_text(str(child.pid))
        return str(child.pid)

    def find(self, run: Run) -> str | None:
        try:
            pid = int((run.run_dir / "pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if read_exit_code(run) is not None or _is_our_process(pid, run.run_dir / "job.sh"):
            return str(pid)
        return None

    def poll(self, run: Run) -> RunStatus:
        code = read_exit_code(run)
        if code is not None:
            self._reap(run)
            return finished_status(code)
        if run.engine_id is None:
            return RunStatus("lost", reason="never started")
        child = self._children.get(run.key)
        alive = child.poll() is None if child else _is_our_process(int(run.engine_id), run.run_dir / "job.sh")
        if alive:
            return RunStatus("running")
        code = read_exit_code(run)  # it may have finished between the two looks
        if code is not None:
            return finished_status(code)
        return RunStatus("lost", reason="the process ended without recording an exit status")

    def cancel(self, run: Run) -> None:
        if run.engine_id is None:
            return
        pid = int(run.engine_id)
        if not (run.key in self._children or _is_our_process(pid, run.run_dir / "job.sh")):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline and self.poll(run).state == "running":
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self._reap(run)

    def logs(self, run: Run) -> str:
        return read_log(run)

    def _reap(self, run: Run) -> None:
        child = self._children.pop(run.key, None)
        if child is not None:
            child.poll()
