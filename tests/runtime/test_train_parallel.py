"""End-to-end CPU runs: 1 process, 2-process FSDP2, 4-process DDP under torchrun (gloo).

Every run sees the same tokens (data.py), so data parallelism must reproduce the single-process
losses up to floating-point reduction order.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from suanli.runtime.config import TrainConfig, load_config
from suanli.runtime.metrics import read_records
from suanli.runtime.train import ProcessEnv, RunResult, launch, run
from tests.runtime.conftest import config_writer, torchrun_port_race

LOSS_RTOL = 1e-4
LOSS_DROP = 0.75  # nats over 16 steps; an untrained model stays at ln(256) = 5.55


def step_losses(metrics_path: str) -> list[float]:
    return [r["loss"] for r in read_records(metrics_path) if r["event"] == "step"]


@pytest.fixture(scope="module")
def single_config(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    write = config_writer(tmp_path_factory.mktemp("single"))
    return load_config(write("single", layout={"dp": 1, "micro_batch": 4, "zero_stage": 0}))


@pytest.fixture(scope="module")
def single_run(single_config: TrainConfig) -> RunResult:
    return run(single_config, env=ProcessEnv())


@pytest.fixture(scope="module")
def single_process(single_run: RunResult) -> list[float]:
    return single_run.losses


def run_torchrun(write_config: Callable[..., Path], name: str, nproc: int, zero_stage: int) -> list[float]:
    path = write_config(name, layout={"dp": nproc, "micro_batch": 2, "zero_stage": zero_stage})
    assert launch(path, nproc, max_restarts=0) == 0
    return step_losses(load_config(path).metrics.path)


def test_single_process_loss_decreases(single_process: list[float]) -> None:
    assert len(single_process) == 16
    assert single_process[-1] < single_process[0] - LOSS_DROP


@torchrun_port_race
def test_two_process_fsdp_matches_single_process(write_config, single_process: list[float]) -> None:
    losses = run_torchrun(write_config, "fsdp2", nproc=2, zero_stage=3)
    assert losses[-1] < losses[0] - LOSS_DROP
    assert losses == pytest.approx(single_process, rel=LOSS_RTOL)


@torchrun_port_race
def test_four_process_ddp_matches_single_process(write_config, single_process: list[float]) -> None:
    losses = run_torchrun(write_config, "ddp4", nproc=4, zero_stage=0)
    assert losses[-1] < losses[0] - LOSS_DROP
    assert losses == pytest.approx(single_process, rel=LOSS_RTOL)


def test_cpu_mfu_against_the_measured_cpu_peak_is_between_0_and_1(
    single_config: TrainConfig, single_run: RunResult
) -> None:
    assert single_run.peak_source.startswith("measured cpu matmul")
    end = next(r for r in read_records(single_config.metrics.path) if r["event"] == "end")
    assert 0 < end["mfu"] < 1
    assert end["hfu"] == pytest.approx(end["mfu"])  # no recomputation: hardware FLOPs = model FLOPs
    assert all(0 < r["mfu"] < 1 for r in read_records(single_config.metrics.path) if r["event"] == "step")
