"""End to end on this CPU machine: each CUDA test script fails as written; after
`suanli port --target cpu` it runs to the end with the losses of a hand-ported version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.port.check import run_script
from tests.port.conftest import RUNNABLE, SCRIPTS, hand_losses

STEPS = {"classic_cnn.py": 8, "gpt_events.py": 6, "fused_libs_graph.py": 6}


@pytest.mark.parametrize("script", RUNNABLE)
def test_ported_script_runs_with_the_hand_ported_losses(script: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "port",
            str(SCRIPTS / script),
            "-t",
            "cpu",
            "-o",
            str(tmp_path),
            "--check",
            "--json",
            "--steps",
            "99",
        ],
    )
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)["check"]
    assert not check["original"]["ran"] and "cuda" in check["original"]["error"].lower()
    assert check["ported"]["ran"], check["ported"]["error"]
    hand = hand_losses(script)
    assert len(hand) == STEPS[script]
    assert check["ported"]["losses"] == list(hand)


def test_the_nccl_ddp_branch_runs_on_gloo_with_the_same_losses(tmp_path: Path) -> None:
    """Both ranks see the same batches, so DDP's averaged gradients are the single process's."""
    result = CliRunner().invoke(
        app, ["port", str(SCRIPTS / "classic_cnn.py"), "-t", "cpu", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    ported = run_script(tmp_path / "classic_cnn.py", nproc=2)
    assert ported.ran, ported.error
    assert ported.losses == list(hand_losses("classic_cnn.py"))
