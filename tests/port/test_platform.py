"""The port inside the platform: a CUDA script goes only to pools whose target can run it, each pool
runs its own ported copy, and a script no pool can run is refused with the reasons."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.port.check import parse_losses
from suanli.port.platform import judge_pools, refusal, script_command, script_sources, write_copies
from tests.port.conftest import SCRIPTS, hand_losses

POOLS = {"h100": "nvidia", "ascend": "ascend", "mtt": "moore-threads", "cpus": None}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(SCRIPTS / "classic_cnn.py", tmp_path / "train.py")
    shutil.copy(SCRIPTS / "blockers.py", tmp_path / "kernels.py")
    return tmp_path


def test_port_auto_opens_every_pool_to_a_script_that_moves(workdir: Path) -> None:
    (workdir / "kernels.py").unlink()
    sources = script_sources(workdir, "train.py")
    auto = {j.pool: (j.target, j.runnable) for j in judge_pools(sources, POOLS, auto=True)}
    assert auto == {
        "h100": (None, True),
        "ascend": ("npu", True),
        "mtt": ("musa", True),
        "cpus": ("cpu", True),
    }
    off = {j.pool for j in judge_pools(sources, POOLS, auto=False) if j.runnable}
    assert off == {"h100"}


def test_a_script_no_pool_can_run_is_refused_with_the_reasons(workdir: Path) -> None:
    sources = script_sources(workdir, "kernels.py")
    judgements = judge_pools(sources, {"ascend": "ascend", "cpus": None}, auto=True)
    assert not any(j.runnable for j in judgements)
    message = str(refusal("kernels.py", judgements))
    assert "\n" not in message
    assert message.startswith("script: kernels.py cannot run on any pool it fits: ascend (npu): ")
    assert "kernels.py:7 import bitsandbytes" in message and "| cpus (cpu): " in message


def test_each_pool_runs_its_own_copy(workdir: Path) -> None:
    (workdir / "kernels.py").unlink()
    judgements = judge_pools(script_sources(workdir, "train.py"), POOLS, auto=True)
    folders = write_copies(judgements, workdir)
    assert folders["h100"] == Path(".")
    assert (workdir / folders["ascend"] / "train.py").read_text().count("import torch_npu") == 1
    command = script_command("train.py", folders)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this interpreter
    env = {**os.environ, "PATH": path, "SUANLI_POOL": "cpus", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert parse_losses(done.stdout) == list(hand_losses("classic_cnn.py"))


def test_a_missing_script_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"^script: .*absent.py: file not found$"):
        script_sources(tmp_path, "absent.py")
