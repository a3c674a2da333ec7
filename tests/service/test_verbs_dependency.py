"""`suanli submit --dependency`, as Slurm's `sbatch --dependency` behaves: a job waits (reason
`Dependency`) until its parents end as asked; one whose dependency can never be met is cancelled
with `DependencyNeverSatisfied` (Slurm's `kill_invalid_depend`), and so in turn are its own children."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.service.dependencies import Dependency, dependency_status, parse_dependency
from suanli.spec.errors import SpecError
from tests.service.conftest import job_yaml, wait_state

FINAL = {"succeeded", "failed", "cancelled"}


def submit(service, name: str, run: str, dependency: str | None = None) -> dict:
    params = {"dependency": dependency} if dependency else {}
    response = service.post("/jobs", content=job_yaml(name, run), params=params)
    assert response.status_code == 201, response.text
    return response.json()


def reason_now(service, job_id: int) -> str | None:
    jobs = service.get("/ops/jobs", params={"state": "pending"}).json()["jobs"]
    return next((j["pending_reason"] for j in jobs if j["id"] == job_id), None)


def test_slurm_dependency_forms_parse():
    assert parse_dependency("afterok:3:4,afterany:5,singleton") == [
        Dependency("afterok", (3, 4)),
        Dependency("afterany", (5,)),
        Dependency("singleton"),
    ]
    for bad, message in [
        (
            "afterfoo:3",
            "dependency: 'afterfoo:3': unknown type (one of afterok, afternotok, afterany, singleton)",
        ),
        ("afterok", "dependency: 'afterok': expected afterok:ID[:ID]"),
        ("afterok:x", "dependency: 'afterok:x': expected afterok:ID[:ID]"),
        ("singleton:3", "dependency: 'singleton:3': expected singleton"),
    ]:
        with pytest.raises(SpecError) as caught:
            parse_dependency(bad)
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "parent", "status"),
    [
        ("afterok:1", "running", "waiting"),
        ("afterok:1", "succeeded", "ready"),
        ("afterok:1", "failed", "never"),
        ("afterok:1", "cancelled", "never"),
        ("afternotok:1", "failed", "ready"),
        ("afternotok:1", "succeeded", "never"),
        ("afterany:1", "cancelled", "ready"),
        ("afterany:1", "pending", "waiting"),
    ],
)
def test_each_kind_against_each_parent_end(text, parent, status):
    assert dependency_status(parse_dependency(text), {1: parent}, False)[0] == status


def test_all_parts_must_hold_and_singleton_waits_for_its_namesake():
    parts = parse_dependency("afterok:1,afterany:2")
    assert dependency_status(parts, {1: "succeeded", 2: "running"}, False) == (
        "waiting",
        "afterany: job 2 is running",
    )
    assert dependency_status(parts, {1: "failed", 2: "running"}, False)[0] == "never"
    assert dependency_status(parse_dependency("singleton"), {}, True)[0] == "waiting"
    assert dependency_status(parse_dependency("singleton"), {}, False)[0] == "ready"


def test_a_failed_parent_cancels_afterok_children_and_theirs(service):
    parent = submit(service, "parent", "sleep 1; exit 3")
    ok = submit(service, "ok", "true", f"afterok:{parent['id']}")
    grandchild = submit(service, "grandchild", "true", f"afterok:{ok['id']}")
    notok = submit(service, "notok", "echo cleaning up", f"afternotok:{parent['id']}")
    anyway = submit(service, "anyway", "true", f"afterany:{parent['id']}")
    wait_state(service, parent["id"], {"running"})
    assert reason_now(service, ok["id"]) == "Dependency"
    assert wait_state(service, parent["id"], FINAL)["state"] == "failed"
    cancelled = wait_state(service, ok["id"], FINAL)
    assert cancelled["state"] == "cancelled"
    assert cancelled["reason"] == f"DependencyNeverSatisfied: afterok parent job {parent['id']} failed"
    assert wait_state(service, grandchild["id"], FINAL)["reason"] == (
        f"DependencyNeverSatisfied: afterok parent job {ok['id']} cancelled"
    )
    assert wait_state(service, notok["id"], FINAL)["state"] == "succeeded"
    assert wait_state(service, anyway["id"], FINAL)["state"] == "succeeded"


def test_afterok_children_start_after_the_parent_succeeds_and_singletons_take_turns(service):
    parent = submit(service, "parent", "sleep 0.5")
    child = submit(service, "child", "true", f"afterok:{parent['id']}")
    first = submit(service, "solo", "sleep 1", "singleton")
    second = submit(service, "solo", "true", "singleton")
    done = {j["id"]: wait_state(service, j["id"], FINAL) for j in (parent, child, first, second)}
    assert {j["state"] for j in done.values()} == {"succeeded"}
    assert done[child["id"]]["started_at"] >= done[parent["id"]]["finished_at"]
    assert done[second["id"]]["started_at"] >= done[first["id"]]["finished_at"]


def test_a_dependency_on_no_job_or_in_no_form_is_refused_in_one_line(service):
    response = service.post("/jobs", content=job_yaml("x", "true"), params={"dependency": "afterok:999"})
    assert response.status_code == 422 and response.json()["detail"] == "dependency: job 999: no such job"
    response = service.post("/jobs", content=job_yaml("x", "true"), params={"dependency": "after:1"})
    assert response.status_code == 422 and response.json()["detail"].startswith("dependency: 'after:1'")
    assert service.get("/jobs", params={"state": "active,finished"}).json() == []  # nothing half-stored


def test_submit_dependency_on_the_command_line(live_server, tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(job_yaml("cli-child", "true"))
    runner = CliRunner()
    first = runner.invoke(app, ["submit", str(spec), "--server", live_server])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["submit", str(spec), "-d", "afterok:1", "--wait", "--server", live_server])
    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[-1].startswith("job 2 succeeded")
