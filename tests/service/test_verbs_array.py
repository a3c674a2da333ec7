"""`suanli submit --array`, as Slurm's `sbatch --array`: one job per task id, each told its id and
its array's id in `SUANLI_ARRAY_TASK_ID` / `SUANLI_ARRAY_JOB_ID`; `%N` keeps at most N tasks
running at once (the others wait with reason `JobArrayTaskLimit`)."""

from __future__ import annotations

import time

import pytest

from suanli.service.arrays import parse_array
from suanli.spec.errors import SpecError
from tests.service.conftest import REPO, job_yaml, wait_state

MIXED = REPO / "examples" / "clusters" / "mixed-center.yaml"
FINAL = {"succeeded", "failed", "cancelled"}


def test_slurm_array_forms():
    assert parse_array("0-31%4") == (list(range(32)), 4)
    assert parse_array("0-15:4") == ([0, 4, 8, 12], None)
    assert parse_array("1,3,5-6") == ([1, 3, 5, 6], None)
    for bad in ("", "3-1", "0-1001", "a-b", "0-7%0", "0-7:0", "1,,2"):
        with pytest.raises(SpecError, match=r"^array: "):
            parse_array(bad)


def test_each_task_is_told_its_index(service):
    response = service.post(
        "/jobs",
        content=job_yaml("arr", "echo $SUANLI_ARRAY_JOB_ID/$SUANLI_ARRAY_TASK_ID"),
        params={"array": "0-6:2"},
    )
    assert response.status_code == 201, response.text
    tasks = response.json()["array_tasks"]
    assert len(tasks) == 4 and response.json()["id"] == tasks[0]
    for task_id, job_id in zip([0, 2, 4, 6], tasks, strict=True):
        assert wait_state(service, job_id, FINAL)["state"] == "succeeded"
        assert service.get(f"/jobs/{job_id}/logs").text.strip() == f"{tasks[0]}/{task_id}"


def test_a_throttled_array_never_runs_more_than_its_limit(make_service):
    """Eight 8-GPU tasks would all fit the mixed centre at once; `%3` runs three at a time."""
    service = make_service(cluster_file=MIXED, simulate_speedup=3600.0)
    body = "name: sweep\nresources: {accelerators: A100:8}\nwalltime: 0.5h\nrun: train\n"
    tasks = service.post("/jobs", content=body, params={"array": "0-7%3"}).json()["array_tasks"]
    seen_waiting = False
    while True:
        jobs = service.get("/ops/jobs", params={"state": "active", "limit": 100}).json()["jobs"]
        started = [j for j in jobs if j["state"] in {"starting", "running"}]
        assert len(started) <= 3
        seen_waiting |= any(j["pending_reason"] == "JobArrayTaskLimit" for j in jobs)
        if not jobs:
            break
        time.sleep(0.05)
    done = [service.get(f"/jobs/{i}").json() for i in tasks]
    assert {j["state"] for j in done} == {"succeeded"} and seen_waiting
    spans = sorted((j["started_at"], j["finished_at"]) for j in done)
    most = max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)
    assert most == 3  # the limit is reached, never passed


def test_array_with_dependency_and_refusals(service):
    parent = service.post("/jobs", content=job_yaml("parent", "exit 1")).json()
    tasks = service.post(
        "/jobs",
        content=job_yaml("after", "true"),
        params={"array": "1-3", "dependency": f"afterok:{parent['id']}"},
    ).json()["array_tasks"]
    for job_id in tasks:
        assert wait_state(service, job_id, FINAL)["reason"].startswith("DependencyNeverSatisfied")
    refused = service.post("/jobs", content=job_yaml("x", "true"), params={"array": "5-1"})
    assert refused.status_code == 422 and refused.json()["detail"].startswith("array: '5-1'")
