"""What each executor gives a sliced job, without a GPU: the environment, the node helper's MIG
choice (against a stand-in `nvidia-smi`), the `sbatch` GRES line and Ray's fractional GPU count."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from suanli.service.admission import QueueConfig, ServiceConfig, admit
from suanli.service.executors.base import Placement, Run
from suanli.service.executors.local import LocalExecutor
from suanli.service.executors.slices import ray_gpus, sliced_run
from suanli.service.executors.slurm import batch_script, sbatch_options
from suanli.spec import Cluster, JobSpec, Sharing, SpecError
from tests.service.conftest import wait_for

A100 = "a100-sxm-80gb"
SMI_LIST = """GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a31)
  MIG 3g.40gb     Device  0: (UUID: MIG-aaaaaaaa-0000-5000-8000-000000000001)
  MIG 1g.10gb     Device  1: (UUID: MIG-bbbbbbbb-0000-5000-8000-000000000002)
  MIG 1g.10gb     Device  2: (UUID: MIG-cccccccc-0000-5000-8000-000000000003)
GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-7e1c2a55-1111-2222-3333-444455556666)
"""


def _run(folder: Path, sharing: dict | None, accelerators: int = 1, run: str = "env") -> Run:
    spec = JobSpec.model_validate({"name": "small", "run": run, **({"sharing": sharing} if sharing else {})})
    return Run(3, 0, spec, Placement("gpu", 1, accelerators, A100, 4), folder / "run", run)


def test_mig_job_asks_slurm_for_its_profile_and_sees_only_that(tmp_path):
    run = _run(tmp_path, {"mig": "1g.10gb"})
    assert sbatch_options(run)["gres"] == "gpu:1g.10gb:1"
    script = batch_script(run)
    assert "export SUANLI_MIG_PROFILE=1g.10gb" in script and "export SUANLI_SLICE_MEMORY_MB=10240" in script
    assert "suanli.runtime.slices" not in script  # Slurm (gres.conf AutoDetect=nvml) picks the instance
    two = _run(tmp_path, {"mig": "3g.40gb"}, accelerators=2)
    assert sbatch_options(two)["gres"] == "gpu:3g.40gb:2"


def test_mps_share_sets_thread_percentage_pinned_memory_and_slurm_mps_shares(tmp_path):
    """MPS docs: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE caps SMs, CUDA_MPS_PINNED_DEVICE_MEM_LIMIT device
    memory per client ordinal; 25 % of an 80 GB A100 is 20,480 MiB; gres/mps takes 25 of 100 shares."""
    run = _run(tmp_path, {"core_fraction": 0.25, "memory_fraction": 0.25})
    env = sliced_run(run, "local").env()
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M"
    assert sbatch_options(run)["gres"] == "mps:25"
    assert "suanli.runtime.slices env" in batch_script(run)  # starts the node's MPS daemon if none runs
    with pytest.raises(SpecError, match="one GPU per node"):
        sbatch_options(_run(tmp_path, {"core_fraction": 0.5}, accelerators=2))


def test_timeslice_share_is_a_slurm_shard_with_only_the_runtime_fence(tmp_path):
    run = _run(tmp_path, {"mode": "timeslice", "memory_fraction": 0.5})
    env = sliced_run(run, "local").env()
    assert env["SUANLI_SLICE_MEMORY_MB"] == "40960" and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env
    assert sbatch_options(run)["gres"] == "shard:50"
    assert sliced_run(run, "local").command == run.command  # nothing to set up on the node


def test_whole_gpu_jobs_are_unchanged(tmp_path):
    run = _run(tmp_path, None, accelerators=4)
    assert sliced_run(run, "ray") is run
    assert sbatch_options(run)["gres"] == f"gpu:{A100}:4" and ray_gpus(run) == 4.0


def test_ray_gets_the_schedulers_fraction_of_each_gpu(tmp_path):
    assert ray_gpus(_run(tmp_path, {"core_fraction": 0.3})) == pytest.approx(0.3)
    assert ray_gpus(_run(tmp_path, {"mig": "3g.40gb"}, accelerators=2)) == pytest.approx(2 * 428 / 1000)


def test_an_accelerator_without_the_mode_is_refused_at_launch(tmp_path):
    run = _run(tmp_path, {"mig": "1g.10gb"})
    run.placement.accelerator = "l40s"
    with pytest.raises(SpecError, match="l40s offers no MIG"):
        sliced_run(run, "local")


def _fake_tools(folder: Path) -> Path:
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] && cat <<'EOF'\n{SMI_LIST}EOF\n")
    mps = folder / "nvidia-cuda-mps-control"
    mps.write_text(
        '#!/bin/sh\nmkdir -p "$CUDA_MPS_PIPE_DIRECTORY" && touch "$CUDA_MPS_PIPE_DIRECTORY/control"\n'
    )
    for tool in (smi, mps):
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return folder


def _job_env(executor: LocalExecutor, run: Run) -> dict[str, str]:
    run.engine_id = executor.submit(run)
    status = wait_for(lambda: (s := executor.poll(run)).state not in {"pending", "running"} and s, 30)
    assert status.state == "succeeded", executor.logs(run)
    return dict(line.split("=", 1) for line in executor.logs(run).splitlines() if "=" in line)


def test_local_executor_runs_each_mig_job_on_its_own_instance(tmp_path, monkeypatch):
    """The node helper reads `nvidia-smi -L`, claims a free 1g.10gb per job (the claim lives as long
    as the job's shell), and the job sees only that instance's UUID."""
    tools = _fake_tools(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SUANLI_SLICE_CLAIMS", str(tmp_path / "claims"))
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "mps"))
    executor = LocalExecutor()
    hold = "env; sleep 2"
    first = _run(tmp_path / "a", {"mig": "1g.10gb"}, run=hold)
    second = _run(tmp_path / "b", {"mig": "1g.10gb"}, run=hold)
    first.engine_id = executor.submit(first)
    wait_for(lambda: (tmp_path / "claims").is_dir() and any((tmp_path / "claims").iterdir()), 20)
    seen = {
        _job_env(executor, second)["CUDA_VISIBLE_DEVICES"],
        _job_env(executor, first)["CUDA_VISIBLE_DEVICES"],
    }
    assert seen == {"MIG-bbbbbbbb-0000-5000-8000-000000000002", "MIG-cccccccc-0000-5000-8000-000000000003"}
    third = _run(tmp_path / "c", {"mig": "3g.40gb"})
    assert _job_env(executor, third)["CUDA_VISIBLE_DEVICES"] == "MIG-aaaaaaaa-0000-5000-8000-000000000001"
    mps = _job_env(executor, _run(tmp_path / "d", {"core_fraction": 0.5}))
    assert mps["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50" and (tmp_path / "mps" / "control").exists()


def test_a_job_whose_slice_cannot_be_provided_fails_with_the_reason(tmp_path, monkeypatch):
    tools = _fake_tools(tmp_path / "bin")
    (tools / "nvidia-smi").write_text(
        f"#!/bin/sh\n[ \"$1\" = -L ] && cat <<'EOF' && exit 0\n{SMI_LIST}EOF\n"
        '[ "$1" = --query-gpu=index,mig.mode.current ] && echo "0, Enabled" && exit 0\n'
        "echo 'Insufficient Resources' >&2; exit 2\n"
    )
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SUANLI_SLICE_CLAIMS", str(tmp_path / "claims"))
    executor = LocalExecutor()
    run = _run(tmp_path / "x", {"mig": "4g.40gb"})
    run.engine_id = executor.submit(run)
    status = wait_for(lambda: (s := executor.poll(run)).state not in {"pending", "running"} and s, 30)
    assert status.state == "failed"
    assert "MIG 4g.40gb: 1 instance(s) wanted, 0 free or creatable on this node" in executor.logs(run)


def _cluster(node_type: str) -> Cluster:
    return Cluster.model_validate({"name": "c", "pools": [{"name": "p", "node_type": node_type, "nodes": 1}]})


def _sliced_spec(sharing: dict, accelerator: str, queue: str = "default") -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "s",
            "run": "true",
            "queue": queue,
            "sharing": sharing,
            "resources": {"accelerators": accelerator},
        }
    )


def test_admission_checks_the_queue_modes_and_what_the_accelerator_can_enforce():
    config = ServiceConfig(queues={"default": QueueConfig(), "inference": QueueConfig(sharing=["mig"])})
    a100 = _cluster("hgx-a100")
    assert admit(_sliced_spec({"mig": "1g.10gb"}, "A100:1", "inference"), a100, config)
    with pytest.raises(SpecError, match=r"sharing\.mode: queue 'inference' allows mig, not fraction"):
        admit(_sliced_spec({"core_fraction": 0.5}, "A100:1", "inference"), a100, config)
    with pytest.raises(SpecError, match=r"l40s offers no MIG \(no MIG: absent from the MIG User Guide"):
        admit(_sliced_spec({"mig": "1g.10gb"}, "L40S:1"), _cluster("l40s-pcie-8"), config)
    with pytest.raises(SpecError, match=r"not a MIG profile of a100-sxm-80gb"):
        admit(_sliced_spec({"mig": "1g.18gb"}, "A100:1"), a100, config)


def test_suanli_queue_labels_each_jobs_slice():
    from suanli.cli.service import _slice

    assert _slice(None) == "whole" and _slice({"mode": "exclusive"}) == "whole"
    assert _slice(Sharing.model_validate({"mig": "1g.10gb"}).model_dump()) == "1g.10gb"
    assert _slice({"mode": "fraction", "core_fraction": 0.25, "memory_fraction": None}) == "mps 25%"
    assert _slice({"mode": "timeslice", "memory_fraction": 0.5}) == "time-slice 50%"


def test_the_service_scheduler_runs_seven_1g_jobs_beside_a_seven_gpu_gang():
    """On one 8-GPU A100 node, seven 1g.10gb jobs share one GPU, so a 7-GPU job starts at once
    beside them (with MIG shares rounded up they took two GPUs and the gang waited)."""
    from suanli.service.scheduling import SuanliScheduler

    cluster = _cluster("hgx-a100")
    scheduler, config = SuanliScheduler(cluster), ServiceConfig()
    specs = [_sliced_spec({"mig": "1g.10gb"}, "A100:1") for _ in range(7)]
    specs.append(
        JobSpec.model_validate({"name": "gang", "run": "true", "resources": {"accelerators": "A100:7"}})
    )
    for job_id, spec in enumerate(specs):
        scheduler.submit(job_id, spec, admit(spec, cluster, config), 0.0)
    started = {d.job_id for d in scheduler.tick(0.0) if d.action == "start"}
    assert started == set(range(8))
