"""Fixtures for the service tests: an in-process service, a `suanli up` server process, and the
system packages some tests install once (Slurm, PostgreSQL, Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from suanli.cli import app
from suanli.service.admission import ServiceConfig
from suanli.service.app import Settings, create_app
from suanli.service.demo import start_service
from suanli.service.serving import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
SIA = REPO / "examples" / "clusters" / "sia-64gpu.yaml"


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, every_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; return its value, or fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def replay_and_sim(data_dir: Path, args: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics JSON of `suanli up --simulate SIA --exit-when-done` (the trace through the live
    service) and of `suanli sim` on the same arguments, each asserted to have run."""
    runner = CliRunner()
    up = ["up", "--simulate", str(SIA), "--exit-when-done", "--data-dir", str(data_dir), *args]
    live = runner.invoke(app, up)
    assert live.exit_code == 0, live.output
    simulated = runner.invoke(app, ["sim", "--cluster", str(SIA), *args])
    assert simulated.exit_code == 0, simulated.output
    return json.loads(live.stdout), json.loads(simulated.stdout)


def process_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def job_yaml(name: str, run: str, **fields: Any) -> str:
    lines = [f"name: {name}", "kind: hpc", f"run: {json.dumps(run)}"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def wait_state(client: Any, job_id: int, states: set[str], timeout_s: float = 20.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["state"] in states else None

    return wait_for(check, timeout_s)


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build an in-process service (API + controller thread) on a fresh data folder."""
    clients: list[TestClient] = []

    def make(config: ServiceConfig | None = None, **settings: Any) -> TestClient:
        if settings.get("data_dir") is None:  # None: a fresh folder for each service
            settings["data_dir"] = (
                tmp_path / f"data{len(clients)}" if "data_dir" in settings else tmp_path / "data"
            )
        settings.setdefault("tick_s", 0.05)
        client = TestClient(create_app(Settings(config=config or ServiceConfig(), **settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def service(make_service: Callable[..., TestClient]) -> TestClient:
    return make_service()


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


def start_server(data_dir: Path, *args: str) -> ServerProcess:
    """`suanli up --port 0` as a separate process (the demo's `start_service`); returns once healthy."""
    process, url = start_service(data_dir, 0, *args, cwd=REPO)
    server = ServerProcess(process, url)
    wait_for(server.healthy, 30)
    return server


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(data_dir: Path, *args: str) -> ServerProcess:
        server = start_server(data_dir, *args)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def apt_install(*packages: str) -> str | None:
    """Install Debian packages once; the reason it could not, or None on success."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    install = subprocess.run(
        ["apt-get", *lock, "install", "-y", "-q", *packages], env=env, capture_output=True, text=True
    )
    if install.returncode != 0:
        subprocess.run(["apt-get", *lock, "update", "-q"], env=env, capture_output=True, text=True)
        install = subprocess.run(
            ["apt-get", *lock, "install", "-y", "-q", *packages], env=env, capture_output=True, text=True
        )
    if install.returncode != 0:
        return f"apt-get install {' '.join(packages)} failed: {install.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """The full service (API, dashboard, controller) on a real loopback port, in this process."""
    stops: list[Callable[[], None]] = []

    def make(**settings: Any) -> str:
        settings.setdefault("data_dir", tmp_path / f"live{len(stops)}")
        settings.setdefault("tick_s", 0.05)
        url, stop = serve_in_thread(create_app(Settings(**settings)))
        stops.append(stop)
        return url

    yield make
    for stop in stops:
        stop()


@pytest.fixture
def live_server(live_server_factory: Callable[..., str]) -> str:
    return live_server_factory()
