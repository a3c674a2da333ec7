"""The platform demo (`python -m suanli.service.demo`): start the service, submit a small mixed
workload — two model-training jobs run by the runtime on CPU and one HPC stencil job — watch the
scheduler place them and the executor run them, print a summary, and stop the service cleanly."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

FINISHED = {"succeeded", "failed", "cancelled"}
PYTHON = sys.executable

TRAINING_JOB = """\
name: {name}
kind: training
model: tiny-llama-test
training: {{seq_len: 64, global_batch_size: 8, total_tokens: {tokens}, precision: fp32}}
checkpoint: {{interval: auto}}
queue: research
priority: {priority}
walltime: 10m
"""

# A Jacobi relaxation of Laplace's equation on a 256×256 grid: the shape of a classic HPC kernel.
HPC_JOB = f"""\
name: jacobi-stencil
kind: hpc
queue: hpc
walltime: 5m
resources: {{cpus: 1}}
run: |
  {PYTHON} - <<'EOF'
  import numpy as np
  grid = np.zeros((256, 256)); grid[0, :] = 100.0
  for sweep in range(1, 2001):
      new = grid.copy()
      new[1:-1, 1:-1] = 0.25 * (grid[:-2, 1:-1] + grid[2:, 1:-1] + grid[1:-1, :-2] + grid[1:-1, 2:])
      change, grid = float(np.abs(new - grid).max()), new
      if sweep % 500 == 0:
          print(f"sweep {{sweep}}: max change {{change:.3e}}", flush=True)
  print(f"centre temperature {{grid[128, 128]:.3f}}")
  EOF
"""


def start_service(
    data_dir: Path, port: int, *args: str, cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`suanli up` (with `args`, run in `cwd`) as a separate process, and its URL once it prints it;
    SystemExit with what it printed when it exits first."""
    command = [
        PYTHON,
        "-c",
        "from suanli.cli import app; app()",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        match = re.search(r"dashboard (http://\S+?)/ ", line)
        if match:
            return process, match.group(1)
    raise SystemExit(f"the service did not start (exit status {process.wait()}):\n{''.join(output)}")


def wait_until_finished(client: httpx.Client, ids: list[int], console: Console) -> list[dict[str, Any]]:
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.fields[state]:<10}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        tasks = {i: progress.add_task(f"job {i}", total=1, state="pending") for i in ids}
        while True:
            jobs = [client.get(f"/jobs/{i}").json() for i in ids]
            for job in jobs:
                step = job["figures"].get("step")
                where = f" on {job['placement']['pool']}" if job.get("placement") else ""
                label = f"job {job['id']} {job['name']}{where}" + (
                    f" step {step:.0f}" if step is not None else ""
                )
                progress.update(
                    tasks[job["id"]],
                    description=label,
                    state=job["state"],
                    completed=1 if job["state"] in FINISHED else 0,
                )
            if all(job["state"] in FINISHED for job in jobs):
                return jobs
            time.sleep(0.5)


def summary(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="Suanli demo: the mixed workload", header_style="bold")
    for column in (
        "id",
        "name",
        "kind",
        "queue",
        "state",
        "pool",
        "waited s",
        "ran s",
        "steps",
        "MFU",
        "goodput",
        "exit",
    ):
        table.add_column(column)
    for job in jobs:
        figures = job["figures"]
        waited = (job["started_at"] or job["finished_at"]) - job["submitted_at"]
        ran = job["finished_at"] - job["started_at"] if job["started_at"] else 0.0
        table.add_row(
            str(job["id"]),
            job["name"],
            job["kind"],
            job["queue"],
            job["state"],
            (job.get("placement") or {}).get("pool", "-"),
            f"{waited:.1f}",
            f"{ran:.1f}",
            f"{figures['step']:.0f}" if "step" in figures else "-",
            f"{figures['mfu']:.2%}" if "mfu" in figures else "-",
            f"{figures['goodput']:.1%}" if "goodput" in figures else "-",
            str(job["exit_code"]) if job["exit_code"] is not None else "-",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0 = any free port)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per training job")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (store, logs, checkpoints)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    data_dir = Path(tempfile.mkdtemp(prefix="suanli-demo-"))
    process, url = start_service(data_dir, args.port)
    console.print(f"[bold]Suanli service up[/bold]: dashboard {url}/  ·  API {url}/docs  ·  data {data_dir}")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            tokens = 64 * 8 * args.steps
            bodies = [
                TRAINING_JOB.format(name="tiny-llama-a", tokens=tokens, priority=10),
                TRAINING_JOB.format(name="tiny-llama-b", tokens=tokens, priority=0),
                HPC_JOB,
            ]
            ids = []
            for body in bodies:
                response = client.post("/jobs", content=body)
                if response.status_code != 201:
                    raise SystemExit(f"submission refused: {response.json()['detail']}")
                ids.append(response.json()["id"])
            console.print(
                f"submitted jobs {ids}; the scheduler ({client.get('/healthz').json()['policy']}) "
                "places them on the local pool one at a time"
            )
            jobs = wait_until_finished(client, ids, console)
            console.print(summary(jobs))
            hpc_log = client.get(f"/jobs/{ids[-1]}/logs").text.strip().splitlines()
            console.print(f"HPC job output (last line): {hpc_log[-1] if hpc_log else '-'}")
            console.print(f"dashboard was at {url}/ ; metrics at {url}/metrics")
        return 0 if all(job["state"] == "succeeded" for job in jobs) else 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        console.print("service stopped")
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
