"""Train configs: typed, and every mistake is one line naming the field."""

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.runtime.config import OptimizerConfig, load_config
from suanli.runtime.train import lr_at
from suanli.spec import SpecError


def test_relative_paths_are_taken_from_the_config_folder(write_config, tmp_path: Path) -> None:
    config = load_config(write_config(checkpoint={"folder": "ckpt"}))
    assert config.checkpoint.folder == str(tmp_path / "ckpt")
    assert config.metrics.path == str(tmp_path / "run" / "metrics.jsonl")
    assert config.resolved_layout().dp == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps: must be > 0"),
        ({"precision": "fp4"}, "precision"),
        ({"model": "llama-9000"}, "unknown model"),
        ({"seq_len": 4096}, "seq_len: 4096 exceeds tiny-llama-test's max_seq_len 128"),
        ({"data": {"kind": "file"}}, "needs a path"),
        ({"layout": {"dp": 1}, "plan": {"accelerator": "h100", "gpus": 1, "layout": {}}}, "not both"),
        ({"optimiser": {}}, "optimiser: is not a known field"),
    ],
)
def test_bad_configs_fail_in_one_line(write_config, overrides: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message) as error:
        config = load_config(write_config(**overrides))
        config.resolved_model()
    assert "\n" not in str(error.value)


def test_a_plan_gives_the_layout_and_the_predicted_step_time(write_config) -> None:
    estimate = {
        "step_time_s": 0.5,
        "compute_s": 0.4,
        "mfu": 0.4,
        "hfu": 0.4,
        "tokens_per_s": 100,
        "memory_gb_per_gpu": 1,
    }
    plan = {"accelerator": "h100", "gpus": 2, "layout": {"dp": 2, "zero_stage": 3}, "estimate": estimate}
    config = load_config(write_config(plan=plan))
    assert config.resolved_layout().zero_stage == 3
    assert config.predicted_step_time_s() == 0.5


@given(total=st.integers(20, 500), warmup=st.integers(1, 19), lr=st.floats(1e-5, 1.0), ratio=st.floats(0, 1))
def test_lr_warms_up_linearly_then_decays_to_its_floor(
    total: int, warmup: int, lr: float, ratio: float
) -> None:
    optimizer = OptimizerConfig(lr=lr, warmup_steps=warmup, min_lr_ratio=ratio)
    schedule = [lr_at(step, total, optimizer) for step in range(total)]
    assert schedule[warmup - 1] == pytest.approx(lr)
    assert all(a <= b for a, b in pairwise(schedule[:warmup]))
    assert all(a >= b - 1e-12 for a, b in pairwise(schedule[warmup - 1 :]))
    assert lr_at(total, total, optimizer) == pytest.approx(lr * ratio)
