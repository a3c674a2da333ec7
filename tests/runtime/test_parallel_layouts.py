"""Every layout the runtime runs trains exactly as one process does (gloo, ranks forked on CPU).

All runs see the same tokens (data.py) and start from the same weights, so tensor, pipeline,
context and expert parallelism, FSDP2/HSDP composed with them, and uneven data-parallel shares
must reproduce the single-process losses up to floating-point reduction order. A checkpoint
written by one layout resumes under another (DCP reshards by parameter name).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from suanli.runtime.config import load_config
from suanli.runtime.metrics import read_records
from suanli.runtime.train import ProcessEnv, run
from tests.runtime.conftest import FIVE_LAYERS, MOE, config_writer, run_forked_ranks

LOSS_RTOL = 1e-4
STEPS = 4
RUN = {"steps": STEPS, "layout": {"micro_batch": 2, "zero_stage": 0}}


def losses_of(path: Path) -> list[float]:
    return [r["loss"] for r in read_records(load_config(path).metrics.path) if r["event"] == "step"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    write = config_writer(tmp_path_factory.mktemp("single"))
    return {
        model["slug"]: run(load_config(write(model["slug"], model=model, **RUN)), env=ProcessEnv()).losses
        for model in (FIVE_LAYERS, MOE)
    }


LAYOUTS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("tp2-sequence-parallel", FIVE_LAYERS, {"tp": 2}, {}),
    ("pp2-1f1b-3+2-layers", FIVE_LAYERS, {"pp": 2}, {}),
    ("pp2-interleaved-1+1+2+1-layers", FIVE_LAYERS, {"pp": 2, "vpp": 2}, {}),
    ("tp2-x-pp2", FIVE_LAYERS, {"tp": 2, "pp": 2}, {}),
    ("fsdp2-x-tp2", FIVE_LAYERS, {"dp": 2, "tp": 2, "zero_stage": 3}, {}),
    ("hsdp-2x2", FIVE_LAYERS, {"dp": 4, "zero_stage": 3}, {"parallel": {"dp_replicate": 2}}),
    ("cp2-ring-attention", FIVE_LAYERS, {"cp": 2}, {}),
    ("ep2-all-to-all", MOE, {"dp": 2, "ep": 2}, {}),
    ("mixed-speed-shares-6-2", FIVE_LAYERS, {"dp": 2}, {"parallel": {"batch_shares": [6, 2]}}),
]


@pytest.mark.parametrize(("name", "model", "layout", "extra"), LAYOUTS, ids=[case[0] for case in LAYOUTS])
def test_layout_matches_one_process(
    write_config: Callable[..., Path],
    single_process: dict[str, list[float]],
    name: str,
    model: dict[str, Any],
    layout: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    path = write_config(name, model=model, **RUN | {"layout": RUN["layout"] | layout} | extra)
    run_forked_ranks(path, load_config(path).resolved_layout().world_size)
    assert losses_of(path) == pytest.approx(single_process[model["slug"]], rel=LOSS_RTOL)


def test_a_checkpoint_resumes_under_another_layout(
    write_config: Callable[..., Path], single_process: dict[str, list[float]]
) -> None:
    """FSDP2 over 2 ranks saves at step 2; an interleaved pipeline (other shards, other ranks'
    layers) resumes from it and finishes with the losses of the uninterrupted single process."""
    checkpoint = {"folder": "ckpt", "every_steps": 2}
    first = write_config(
        "fsdp2",
        model=FIVE_LAYERS,
        steps=2,
        layout={"dp": 2, "micro_batch": 2, "zero_stage": 3},
        checkpoint=checkpoint,
    )
    run_forked_ranks(first, 2)
    second = write_config(
        "pp2v2",
        model=FIVE_LAYERS,
        **RUN | {"layout": RUN["layout"] | {"pp": 2, "vpp": 2}},
        checkpoint=checkpoint,
    )
    run_forked_ranks(second, 2)
    resumed = [r for r in read_records(load_config(second).metrics.path) if r["event"] == "resume"]
    assert resumed and resumed[0]["restored_step"] == 2
    assert losses_of(second) == pytest.approx(single_process[FIVE_LAYERS["slug"]][2:], rel=LOSS_RTOL)
