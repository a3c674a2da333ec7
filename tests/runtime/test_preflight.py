"""Preflight: every run the runtime cannot do is refused in one line before any process starts."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.runtime.config import PLAN_ENV, load_config
from suanli.runtime.preflight import preflight
from suanli.spec import SpecError
from tests.runtime.conftest import FIVE_LAYERS, MOE

THREE_EXPERTS = {"experts": 3, "top_k": 2, "expert_ffn_hidden": 32}


@pytest.mark.parametrize(
    ("overrides", "processes", "message"),
    [
        ({"layout": {"dp": 4}}, 2, r"needs tp×pp×dp×cp = 4 processes but 2 were launched; use --nproc 4"),
        ({"layout": {"tp": 8}}, 8, r"layout.tp=8 must divide the attention heads \(4\)"),
        ({"layout": {"tp": 2}, "model": MOE}, 2, "shards MoE layers with ep, not tp"),
        ({"layout": {"pp": 4}}, 4, r"4 stages but tiny-llama-test has 2 layers"),
        ({"layout": {"pp": 2, "dp": 1, "zero_stage": 3}}, 2, "pipelines with tp and DDP-style dp only"),
        ({"layout": {"pp": 2, "vpp": 2, "micro_batch": 8}, "model": FIVE_LAYERS}, 2, "multiple of pp"),
        ({"layout": {"cp": 3}, "seq_len": 32}, 3, r"layout.cp=3 must divide seq_len \(32\)"),
        ({"layout": {"dp": 2, "ep": 2}}, 2, "tiny-llama-test is a dense model"),
        ({"layout": {"dp": 2, "ep": 2, "zero_stage": 3}, "model": MOE}, 2, "DDP-style dp only"),
        ({"layout": {"dp": 2, "ep": 4}, "model": MOE}, 2, r"layout.ep=4 must divide dp \(2\)"),
        (
            {"layout": {"dp": 2, "ep": 2}, "model": MOE | {"moe": MOE["moe"] | {"experts": 3}}},
            2,
            "the experts",
        ),
        ({"layout": {"dp": 3}}, 3, "multiple of dp"),
        ({"layout": {"recompute": "selective"}}, 1, "selective is not implemented"),
        (
            {"layout": {"dp": 2, "zero_stage": 0}, "parallel": {"dp_replicate": 2}},
            2,
            "HSDP needs zero_stage 3",
        ),
        (
            {"layout": {"dp": 2}, "parallel": {"batch_shares": [5, 2]}},
            2,
            r"\[5, 2\] must give 2 data-parallel ranks 8 sequences",
        ),
        ({"layout": {"dp": 2, "tp": 2}, "parallel": {"batch_shares": [6, 2]}}, 4, "data-parallel ranks only"),
        ({"accelerator": "h100-sxm"}, 1, "runs on 'cuda' devices; this machine has no accelerator"),
    ],
)
def test_a_run_that_cannot_work_is_refused_in_one_line(
    write_config, overrides: dict, processes: int, message: str
) -> None:
    with pytest.raises(SpecError, match=message) as error:
        preflight(load_config(write_config(**overrides)), processes)
    assert "\n" not in str(error.value)


def test_every_supported_layout_passes(write_config) -> None:
    for overrides, processes in [
        ({"layout": {"tp": 2}}, 2),
        ({"layout": {"pp": 2, "vpp": 2}, "model": FIVE_LAYERS}, 2),
        ({"layout": {"tp": 2, "pp": 2}, "model": FIVE_LAYERS}, 4),
        ({"layout": {"dp": 2, "tp": 2, "zero_stage": 3}}, 4),
        ({"layout": {"cp": 2}}, 2),
        ({"layout": {"dp": 2, "ep": 2}, "model": MOE}, 2),
        ({"layout": {"dp": 4, "zero_stage": 3}, "parallel": {"dp_replicate": 2}}, 4),
        ({"layout": {"dp": 2}, "parallel": {"batch_shares": [6, 2]}}, 2),
    ]:
        preflight(load_config(write_config(**overrides)), processes)


def test_the_cli_refuses_an_absent_accelerator_in_one_line_with_status_2(write_config) -> None:
    path: Path = write_config(accelerator="h100-sxm")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "this machine has no accelerator" in lines[0], result.output


def test_the_cli_runs_the_layout_of_a_plan_file(write_config, tmp_path: Path, monkeypatch) -> None:
    """`--plan` takes the first plan of `suanli plan --json` output and launches its world size."""
    plan = {"accelerator": "cpu-1core", "gpus": 2, "layout": {"tp": 2, "zero_stage": 0, "micro_batch": 2}}
    (tmp_path / "plans.json").write_text(json.dumps([plan]))
    monkeypatch.setenv(PLAN_ENV, "")  # the command hands the plan to its ranks here; undone after the test
    launched = {}
    monkeypatch.setattr(
        "suanli.runtime.train.launch", lambda config, nproc, *a: launched.update(nproc=nproc) or 0
    )
    result = CliRunner().invoke(app, ["train", str(write_config()), "--plan", str(tmp_path / "plans.json")])
    assert result.exit_code == 0, result.output
    assert launched == {"nproc": 2}
