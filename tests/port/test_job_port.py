"""A job that names a CUDA script: `port: auto` sends it to every pool whose accelerator can run it
(ported at admission), the planner lists only those pools, and a script none can run is refused with
the reasons."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from suanli.plan.space import targets
from suanli.service.admission import ServiceConfig, admit
from suanli.spec import Cluster, JobSpec, SpecError
from tests.port.conftest import SCRIPTS

CLUSTER = Cluster.model_validate(
    {
        "name": "mixed",
        "pools": [
            {"name": "h100", "node_type": "hgx-h100", "nodes": 1},
            {"name": "ascend", "node_type": "ascend-910b-8", "nodes": 1},
            {"name": "mtt", "node_type": "kuae-s4000-8", "nodes": 1},
        ],
    }
)


def _job(workdir: Path, script: str, port: str, **extra: object) -> JobSpec:
    fields = {"name": "j", "resources": {"accelerators": "any:8"}, "workdir": str(workdir)}
    return JobSpec.model_validate(fields | {"script": script, "port": port} | extra)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(SCRIPTS / "classic_cnn.py", tmp_path / "train.py")
    return tmp_path


def test_port_auto_admits_every_pool_and_runs_each_pools_copy(workdir: Path) -> None:
    job = _job(workdir, "train.py", "auto")
    placements = admit(job, CLUSTER, ServiceConfig())
    assert {p.pool for p in placements} == {"h100", "ascend", "mtt"}
    assert "import torch_npu" in (workdir / ".suanli-port" / "npu" / "train.py").read_text()
    assert "import torch_musa" in (workdir / ".suanli-port" / "musa" / "train.py").read_text()
    assert job.run == (
        'case "$SUANLI_POOL" in ascend) python .suanli-port/npu/train.py ;; '
        "mtt) python .suanli-port/musa/train.py ;; *) python train.py ;; esac"
    )


def test_without_port_a_cuda_script_goes_only_to_cuda_pools(workdir: Path) -> None:
    job = _job(workdir, "train.py", "off")
    assert {p.pool for p in admit(job, CLUSTER, ServiceConfig())} == {"h100"}
    assert job.run == "python train.py"
    assert not (workdir / ".suanli-port").exists()


def test_a_given_run_command_is_kept(workdir: Path) -> None:
    job = _job(workdir, "train.py", "auto", run="torchrun --nproc-per-node 8 train.py")
    admit(job, CLUSTER, ServiceConfig())
    assert job.run == "torchrun --nproc-per-node 8 train.py"


def test_a_script_no_domestic_pool_can_run_is_refused_with_the_reasons(tmp_path: Path) -> None:
    shutil.copy(SCRIPTS / "blockers.py", tmp_path / "train.py")
    domestic = Cluster.model_validate(CLUSTER.model_dump() | {"pools": CLUSTER.model_dump()["pools"][1:]})
    with pytest.raises(SpecError) as refused:
        admit(_job(tmp_path, "train.py", "auto"), domestic, ServiceConfig())
    message = str(refused.value)
    assert message.startswith("script: train.py cannot run on any pool it fits: ascend (npu): train.py:7")
    assert "| mtt (musa): " in message and "\n" not in message


def test_the_planner_lists_only_pools_that_run_the_script(tmp_path: Path) -> None:
    shutil.copy(SCRIPTS / "fused_libs_graph.py", tmp_path / "train.py")
    gaudi = Cluster.model_validate(
        {
            "name": "g",
            "pools": [
                {"name": "ascend", "node_type": "ascend-910b-8", "nodes": 1},
                {"name": "gaudi", "node_type": "gaudi2-8", "nodes": 1},
            ],
        }
    )
    found, reasons = targets(_job(tmp_path, "train.py", "auto", model="llama3.1-8b"), gaudi)
    assert [t.pool for t in found] == ["ascend"]
    assert any(r.startswith("gaudi (hpu): train.py:52 torch.cuda.make_graphed_callables") for r in reasons)
