"""The elastic launcher: deterministic failures are not retried, crashes are, and the node agent it
supervises is restarted after a SIGKILL without leaking shared memory.

Run as a script, this file is the worker the launcher forks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from suanli.ft.checkpoint.agent import SHM_ROOT, shm_prefix

REPO = Path(__file__).resolve().parents[2]


def worker(out: Path, mode: str) -> None:
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    rank = int(os.environ["RANK"])
    (out / f"attempt{attempt}-rank{rank}").touch()
    if mode == "deterministic":
        sys.exit(2)  # what `suanli.runtime.train` returns for a bad config or unusable checkpoint
    if mode == "crash" and attempt == 0:
        os._exit(17)
    if mode == "agent":
        _save_through_agent(out, rank, attempt)


def _save_through_agent(out: Path, rank: int, attempt: int) -> None:
    """Save to the memory tier every 50 ms until the test has killed the agent and it is back."""
    import torch

    from suanli.ft.checkpoint.agent import AGENT_DIR_ENV
    from suanli.ft.checkpoint.engine import CheckpointEngine

    agents = os.environ[AGENT_DIR_ENV]
    engine = CheckpointEngine(out / f"ckpt{rank}", rank, 1, agent_dir=agents, disk_every=10**9)
    weights = torch.zeros(1 << 20)
    step = 0
    while not (out / "agent-restarted").exists():
        step += 1
        weights.fill_(step)
        engine.save(step, {"w": weights})
        time.sleep(0.05)
    for _ in range(3):  # saves after the restart reach the new agent
        step += 1
        weights.fill_(step)
        engine.save(step, {"w": weights})
    engine.close()
    restored = {"w": torch.zeros(1 << 20)}
    check = CheckpointEngine(out / f"ckpt{rank}", rank, 1, agent_dir=agents)
    (out / f"restored{rank}.json").write_text(
        json.dumps({"step": check.load(restored), "tier": check.restored.tier})
    )


def _launch(out: Path, mode: str, **options) -> subprocess.Popen:
    code = (
        "import sys; from suanli.ft.checkpoint.launcher import launch; "
        f"sys.exit(launch({__file__!r}, [{str(out)!r}, {mode!r}], 2, **{options!r}))"
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], env=environment, stderr=subprocess.PIPE, text=True)


def test_a_deterministic_error_is_not_retried(tmp_path):
    job = _launch(tmp_path, "deterministic", max_restarts=3)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt0-rank0", "attempt0-rank1"]
    assert "deterministic error; not restarting" in stderr


def test_a_crash_is_retried(tmp_path):
    job = _launch(tmp_path, "crash", max_restarts=1)
    job.communicate(timeout=120)
    assert job.returncode == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"attempt1-rank0", "attempt1-rank1"}


def _segments(agent_dir: Path) -> list[Path]:
    return sorted(SHM_ROOT.glob(shm_prefix(agent_dir) + "*"))


def test_a_killed_agent_is_restarted_keeps_its_snapshots_and_leaks_no_shared_memory(tmp_path):
    agent_dir = tmp_path / "agents"
    job = _launch(tmp_path, "agent", agent_dir=str(agent_dir))
    address = agent_dir / "node-0.json"
    deadline = time.monotonic() + 60
    while not (
        address.exists() and len(_segments(agent_dir)) == 1 and any(_segments(agent_dir)[0].iterdir())
    ):
        assert time.monotonic() < deadline and job.poll() is None, "the job never saved to the agent"
        time.sleep(0.05)
    first_pid = json.loads(address.read_text())["pid"]
    os.kill(first_pid, signal.SIGKILL)
    while not (address.exists() and json.loads(address.read_text())["pid"] != first_pid):
        assert time.monotonic() < deadline + 60 and job.poll() is None, "the agent was not restarted"
        time.sleep(0.05)
    assert len(_segments(agent_dir)) == 1  # the new agent adopted the folder, it made no second one
    (tmp_path / "agent-restarted").touch()
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stderr[-2000:]
    assert "exited with -9; restarting it" in stderr
    for rank in (0, 1):
        restored = json.loads((tmp_path / f"restored{rank}.json").read_text())
        assert restored["tier"] == "memory" and restored["step"] > 3
    assert _segments(agent_dir) == []  # the launcher stopped the agent, which removed its memory


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2])
