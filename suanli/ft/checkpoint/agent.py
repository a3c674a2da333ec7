"""The per-node checkpoint agent: a small process that owns the node's in-memory snapshots.

Start one per node before the training processes (the launcher or the job script does it):

    python -m suanli.ft.checkpoint.agent --node-id 0 --agent-dir /shared/job42/agents

It listens on a free TCP port, writes `node-<id>.json` (host, port, pid, shm folder) into
`--agent-dir` so workers on any node can find it, keeps snapshots in `/dev/shm` and removes them
when it stops (SIGTERM, SIGINT or a `stop` request).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from suanli.ft.checkpoint.memory_tier import AgentClient, SlotTable, address_file, serve_request

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], table: SlotTable) -> None:
        super().__init__(address, _Handler)
        self.table = table


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            keep_running = serve_request(self.server.table, self.request)
        except (ConnectionError, OSError):
            return
        if not keep_running:
            threading.Thread(target=self.server.shutdown, daemon=True).start()


def _write_address(path: Path, address: dict) -> None:
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(address))
    temporary.rename(path)


def run_agent(node_id: int, agent_dir: Path, host: str = "127.0.0.1") -> None:
    """Serve until stopped; the shared-memory folder is removed on the way out."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"suanli-ft-node{node_id}-", dir=SHM_ROOT))
    server = _Server((host, 0), SlotTable(folder))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    address = {"host": host, "port": server.server_address[1], "pid": os.getpid(), "shm": str(folder)}
    _write_address(address_file(agent_dir, node_id), address)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


def start_agent(node_id: int, agent_dir: str | os.PathLike, timeout_s: float = 30.0) -> subprocess.Popen:
    """Start an agent process for `node_id` and return once it answers."""
    agent_dir = Path(agent_dir)
    address_file(agent_dir, node_id).unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "suanli.ft.checkpoint.agent",
            "--node-id",
            str(node_id),
            "--agent-dir",
            str(agent_dir),
        ],
        start_new_session=True,
    )
    client = AgentClient(agent_dir, node_id)
    deadline = time.monotonic() + timeout_s
    while not client.available():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"checkpoint agent for node {node_id} did not start (exit code {process.poll()})"
            )
        time.sleep(0.05)
    return process


def shm_folder(agent_dir: str | os.PathLike, node_id: int) -> Path | None:
    """The shared-memory folder an agent announced (to clean up after one that was SIGKILLed)."""
    try:
        return Path(json.loads(address_file(agent_dir, node_id).read_text())["shm"])
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--agent-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    run_agent(args.node_id, args.agent_dir, args.host)


if __name__ == "__main__":
    main()
