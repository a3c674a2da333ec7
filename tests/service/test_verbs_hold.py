"""`suanli hold / release / requeue`, as Slurm's `scontrol hold / release / requeue` behave: a held
job stays pending with reason `Held` until released (across a restart too); a requeued job's run
is stopped and the job runs again as its next attempt."""

from __future__ import annotations

import sqlite3
import time

import httpx
from typer.testing import CliRunner

from suanli.cli import app
from suanli.service.store import Store
from tests.service.conftest import job_yaml, process_alive, wait_for, wait_state

BLOCKER = "sleep 30"  # holds the one-node local pool, so whatever is behind it stays pending
runner = CliRunner()


def pending_reason(service, job_id: int) -> str | None:
    jobs = service.get("/ops/jobs", params={"state": "pending"}).json()["jobs"]
    return next((j["pending_reason"] for j in jobs if j["id"] == job_id), None)


def test_a_held_job_waits_through_a_restart_until_released(make_service, tmp_path):
    data = tmp_path / "store"
    service = make_service(data_dir=data)
    blocker = service.post("/jobs", content=job_yaml("blocker", BLOCKER)).json()
    wait_state(service, blocker["id"], {"running"})
    held = service.post("/jobs", content=job_yaml("held", "echo released")).json()
    answer = service.post(f"/jobs/{held['id']}/hold").json()
    assert answer["state"] == "pending" and answer["held"] and answer["reason"] == "held by the user"
    assert pending_reason(service, held["id"]) == "Held"
    service.__exit__(None, None, None)

    service = make_service(data_dir=data)  # the same store: the hold is durable
    assert service.post(f"/jobs/{blocker['id']}/cancel").json()["state"] == "cancelled"
    time.sleep(0.5)  # ten scheduling ticks with the pool free
    assert service.get(f"/jobs/{held['id']}").json()["state"] == "pending"
    assert pending_reason(service, held["id"]) == "Held"
    assert service.post(f"/jobs/{held['id']}/release").json()["held"] is False
    done = wait_state(service, held["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded"
    assert [h["to"] for h in done["history"]] == ["pending", "starting", "running", "succeeded"]


def test_hold_and_release_only_pending_jobs(service):
    running = service.post("/jobs", content=job_yaml("runs", BLOCKER)).json()
    wait_state(service, running["id"], {"running"})
    response = service.post(f"/jobs/{running['id']}/hold")
    assert response.status_code == 422
    assert response.json()["detail"] == f"job {running['id']}: only a pending job can be held (it is running)"
    assert service.post("/jobs/999/release").status_code == 404
    waiting = service.post("/jobs", content=job_yaml("waits", "true")).json()
    assert service.post(f"/jobs/{waiting['id']}/release").json()["held"] is False  # not held: unchanged
    assert service.post(f"/jobs/{waiting['id']}/hold").json()["held"] is True
    assert service.post(f"/jobs/{waiting['id']}/cancel").json()["state"] == "cancelled"  # held, cancelled
    service.post(f"/jobs/{running['id']}/cancel")


def test_requeue_stops_the_run_and_starts_the_next_attempt(service):
    job = service.post("/jobs", content=job_yaml("long", BLOCKER)).json()
    first = wait_state(service, job["id"], {"running"})
    answer = service.post(f"/jobs/{job['id']}/requeue").json()
    assert answer["state"] in {"pending", "starting", "running"}
    again = wait_for(lambda: (j := service.get(f"/jobs/{job['id']}").json())["attempt"] == 2 and j)
    assert wait_for(lambda: not process_alive(int(first["engine_id"])), 10)  # the first run is gone
    steps = [(h["from"], h["to"], h["reason"]) for h in again["history"]]
    assert ("running", "pending", "requeued by the user") in steps
    response = service.post(f"/jobs/{job['id']}/cancel")
    assert response.json()["state"] == "cancelled"
    assert service.post(f"/jobs/{job['id']}/requeue").json()["detail"].endswith("(it is cancelled)")


def test_a_store_made_before_holds_existed_gains_the_column(tmp_path):
    path = tmp_path / "old.db"
    store = Store(str(path))
    job = store.add_job({"name": "old", "kind": "hpc", "run": "true"}, None)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE jobs DROP COLUMN held")
        db.execute("ALTER TABLE jobs DROP COLUMN user")
    store = Store(str(path))
    assert store.get(job.id).held is False and store.get(job.id).user == "anonymous"
    store.close()


def test_the_cli_verbs(live_server):
    blocker = httpx.post(f"{live_server}/jobs", content=job_yaml("blocker", BLOCKER)).json()
    waits = httpx.post(f"{live_server}/jobs", content=job_yaml("waits", "true")).json()
    wait_for(lambda: httpx.get(f"{live_server}/jobs/{blocker['id']}").json()["state"] == "running")
    result = runner.invoke(app, ["hold", str(waits["id"]), "--server", live_server])
    assert result.output == f"job {waits['id']} (waits): pending (held)\n"
    result = runner.invoke(app, ["release", str(waits["id"]), "--server", live_server])
    assert result.output == f"job {waits['id']} (waits): pending\n"
    result = runner.invoke(app, ["hold", str(blocker["id"]), "--server", live_server])
    assert result.exit_code == 2
    assert f"error: job {blocker['id']}: only a pending job can be held (it is running)" in result.output
    result = runner.invoke(app, ["requeue", str(blocker["id"]), "--server", live_server])
    assert result.exit_code == 0 and "(blocker)" in result.output
    httpx.post(f"{live_server}/jobs/{blocker['id']}/cancel")
