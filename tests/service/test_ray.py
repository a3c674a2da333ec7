"""The Ray executor: jobs run as Ray Jobs on a local Ray instance started for this module (every
port chosen free and a private temp dir, so it cannot collide with another Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import job_yaml, process_alive, wait_for, wait_state


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture(scope="module")
def ray_address():
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        pytest.skip("the `ray` command is not installed (pip install 'ray[default]')")
    temp_dir = tempfile.mkdtemp(prefix="sray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard, agent, agent_grpc, client, metrics, env_agent, node_manager, object_manager = _free_ports(
        9
    )
    command = [
        str(ray),
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--ray-client-server-port={client}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={env_agent}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        "--min-worker-port=0",
        "--max-worker-port=0",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    address = f"http://127.0.0.1:{dashboard}"

    def ready() -> bool:
        try:
            return httpx.get(f"{address}/api/version", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 90, 0.5)
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever Ray left in the session we started
        shutil.rmtree(temp_dir, ignore_errors=True)


LONG_RUN = "sleep 120 & echo $! > $SUANLI_RUN_DIR/child.pid; wait"


def _run_dir(service, job_id: int) -> Path:
    return Path(service.app.state.settings.data_dir) / "runs" / str(job_id) / "1"


def _read(run_dir: Path) -> str | None:
    try:
        return (run_dir / "child.pid").read_text().strip() or None
    except FileNotFoundError:
        return None


def test_jobs_run_fail_and_cancel_as_ray_jobs(make_service, ray_address):
    service = make_service(executor="ray", executor_options={"address": ray_address})
    ok = service.post(
        "/jobs", content=job_yaml("ok", "echo ray job $SUANLI_JOB_ID attempt $SUANLI_ATTEMPT")
    ).json()
    bad = service.post("/jobs", content=job_yaml("bad", "exit 5")).json()
    done = wait_state(service, ok["id"], {"succeeded", "failed"}, 90)
    assert done["state"] == "succeeded", done
    assert done["engine_id"] == f"suanli-{ok['id']}-1"  # the Ray submission id is the run key
    assert f"ray job {ok['id']} attempt 1" in service.get(f"/jobs/{ok['id']}/logs").text
    failed = wait_state(service, bad["id"], {"succeeded", "failed"}, 90)
    assert failed["state"] == "failed" and failed["exit_code"] == 5
    long = service.post("/jobs", content=job_yaml("long", LONG_RUN)).json()
    running = wait_state(service, long["id"], {"running"}, 60)
    child_pid = int(wait_for(lambda: _read(_run_dir(service, long["id"])), 30))
    assert service.post(f"/jobs/{long['id']}/cancel").json()["state"] == "cancelled"
    assert wait_for(lambda: not process_alive(child_pid), 20)  # no stray process outlives a stopped run

    def ray_status() -> str:
        return httpx.get(f"{ray_address}/api/jobs/{running['engine_id']}", timeout=5).json()["status"]

    assert wait_for(lambda: ray_status() == "STOPPED", 30)
