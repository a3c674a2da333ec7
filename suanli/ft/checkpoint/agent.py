"""The per-node checkpoint agent: a small process that owns the node's in-memory snapshots.

Start one per node before the training processes (the launcher or the job script does it):

    python -m suanli.ft.checkpoint.agent --node-id 0 --agent-dir /shared/job42/agents

It listens on a free TCP port, writes `node-<id>.json` (host, port, pid, shm folder) into
`--agent-dir` so workers on any node can find it, keeps snapshots in `/dev/shm` and removes them
when it stops (SIGTERM, SIGINT or a `stop` request). Its shared-memory folder is named after the
agent folder and the node, so an agent restarted after a crash (the launcher supervises it) finds
the folder its predecessor left: it adopts the sealed snapshots and frees the rest, and nothing
leaks in `/dev/shm`.
"""

from __future__ import annotations

import argparse
import hashlib
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
from suanli.spec.io import atomic_write_text

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
AGENT_DIR_ENV = "SUANLI_CHECKPOINT_AGENT_DIR"


def shm_prefix(agent_dir: str | os.PathLike) -> str:
    """The name prefix of every shared-memory folder the agents of `agent_dir` own."""
    digest = hashlib.sha1(str(Path(agent_dir).resolve()).encode()).hexdigest()[:12]
    return f"suanli-ft-{digest}-"


def shm_folder_for(agent_dir: str | os.PathLike, node_id: int) -> Path:
    return SHM_ROOT / f"{shm_prefix(agent_dir)}node{node_id}"


def remove_shared_memory(agent_dir: str | os.PathLike) -> list[Path]:
    """Delete the shared memory the agents of `agent_dir` left (only when none of them runs)."""
    folders = sorted(SHM_ROOT.glob(shm_prefix(agent_dir) + "*"))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return folders


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], table: SlotTable) -> None:
        super().__init__(address, _Handler)
        self.table = table


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _Server)  # _Handler is only ever served by _Server (see its __init__)
        try:
            keep_running = serve_request(server.table, self.request)
        except (ConnectionError, OSError):
            return
        if not keep_running:
            threading.Thread(target=server.shutdown, daemon=True).start()


def _write_address(path: Path, address: dict) -> None:
    atomic_write_text(path, json.dumps(address))


def run_agent(node_id: int, agent_dir: Path, host: str = "127.0.0.1") -> None:
    """Serve until stopped; the shared-memory folder is removed on the way out."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    folder = shm_folder_for(agent_dir, node_id)
    server = _Server((host, 0), SlotTable.adopt(folder))
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--agent-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    run_agent(args.node_id, args.agent_dir, args.host)


if __name__ == "__main__":
    main()
