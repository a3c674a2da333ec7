"""`suanli train`: bad input is one line and exit status 2, before any process starts."""

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.runtime.config import load_config

runner = CliRunner()


@pytest.mark.parametrize(
    ("overrides", "args", "message"),
    [
        (
            {"layout": {"tp": 2, "dp": 1}},
            ["--nproc", "3"],
            "needs tp×pp×dp×cp = 2 processes but 3 were launched",
        ),
        ({"layout": {"dp": 2}}, ["--nproc", "4"], "needs tp×pp×dp×cp = 2 processes but 4 were launched"),
        ({"global_batch_size": 6}, ["--nproc", "4"], "global_batch_size 6"),
        ({"data": {"kind": "file", "path": "missing.bin"}}, [], "token file"),
        ({"accelerator": "h900"}, [], "unknown accelerator 'h900'"),
    ],
)
def test_bad_runs_fail_in_one_line(
    write_config: Callable[..., Path], overrides: dict, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["train", str(write_config(**overrides)), *args])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert message in result.output


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.output


def test_the_example_config_is_valid(repo: Path) -> None:
    config = load_config(repo / "examples/train/tiny.yaml")
    assert config.resolved_layout().dp == 2
    assert config.checkpoint is not None
