"""Every user-facing error kind leaves the API as its one HTTP status with a one-line `detail`, and
an engine that refuses a run raises `ExecutorError` with one line naming the engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suanli.ft.checkpoint.manifest import CheckpointError
from suanli.service.executors.base import Placement, Run
from suanli.service.executors.local import LocalExecutor
from suanli.service.executors.slurm import SlurmExecutor
from suanli.spec import JobSpec
from suanli.spec.errors import (
    DatasetError,
    ExecutorError,
    PlanInfeasible,
    SpecError,
    StoreError,
    SuanliError,
)

KINDS = [
    (SpecError, 422),
    (DatasetError, 404),
    (PlanInfeasible, 409),
    (ExecutorError, 502),
    (StoreError, 503),
    (CheckpointError, 409),
]


@pytest.mark.parametrize(("kind", "status"), KINDS, ids=[k.__name__ for k, _ in KINDS])
def test_each_error_kind_is_its_status_and_one_line(service, kind, status):
    def fail() -> None:
        raise kind("first problem\nsecond problem")

    service.app.add_api_route("/fail", fail)
    response = service.get("/fail")
    assert response.status_code == status == kind.http_status
    assert response.json() == {"detail": "first problem; second problem"}


def test_a_parameter_the_framework_refuses_is_one_line_too(service):
    response = service.get("/jobs", params={"limit": 0})
    assert response.status_code == 422
    assert response.json() == {"detail": "query.limit: input should be greater than or equal to 1"}


def test_a_job_no_layout_fits_is_409_plan_infeasible(make_service, examples):
    service = make_service(cluster_file=examples / "clusters/mixed-center.yaml")
    body = "name: big\nmodel: llama3.1-405b\nresources: {accelerators: 'H100:16'}\ntraining: {}\n"
    response = service.post("/plan", content=body)
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail.startswith("no feasible plan: ") and "\n" not in detail
    assert "llama3.1-405b needs ≥ " in detail


def test_a_store_that_went_away_is_503_naming_it(service):
    store = service.app.state.controller.store
    path = Path(store.engine.url.database)
    os.rename(path, path.with_suffix(".moved"))
    path.mkdir()  # the database file is gone: SQLite cannot open it any more
    store.engine.dispose()
    response = service.get("/jobs")
    assert response.status_code == 503
    assert response.json() == {"detail": f"store at sqlite:///{path}: unable to open database file"}


def _run(tmp_path: Path, **spec: object) -> Run:
    job = JobSpec.model_validate({"name": "x", "kind": "hpc", "run": "true", **spec})
    return Run(1, 1, job, Placement("local", 1), tmp_path / "run", "true")


def test_a_local_engine_that_cannot_start_the_run_raises_one_line(tmp_path):
    run = _run(tmp_path, envs={"PATH": str(tmp_path / "empty")})  # no bash to be found
    with pytest.raises(ExecutorError) as caught:
        LocalExecutor().submit(run)
    assert str(caught.value) == f"local: cannot start {run.run_dir / 'job.sh'}: No such file or directory"


def test_a_host_without_slurm_raises_one_line(tmp_path):
    executor = SlurmExecutor()
    executor.env["PATH"] = str(tmp_path)  # no sbatch on it
    with pytest.raises(SuanliError) as caught:
        executor.submit(_run(tmp_path))
    assert isinstance(caught.value, ExecutorError)
    assert str(caught.value) == "slurm: sbatch not found: is Slurm installed on this host?"
