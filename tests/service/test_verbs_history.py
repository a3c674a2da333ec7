"""`suanli history`, as `sacct` reads the accounting store: every job alive in a time window
(`-S`/`-E`), filtered by user and state (ours or sacct's codes), in the `--format` columns; and the
submitting user, from the token the service config maps to a name (anonymous otherwise)."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from suanli.cli import app
from suanli.service.admission import ServiceConfig
from suanli.service.store import Store
from tests.service.conftest import job_yaml, wait_state

runner = CliRunner()
USERS = {"tok-alice": "alice", "tok-bob": "bob"}


def suanli(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_token_names_the_submitter(make_service):
    service = make_service(config=ServiceConfig(token="admin", users=USERS))
    alice = service.post(
        "/jobs", content=job_yaml("a", "true"), headers={"authorization": "Bearer tok-alice"}
    )
    admin = service.post("/jobs", content=job_yaml("b", "true"), headers={"authorization": "Bearer admin"})
    assert alice.json()["user"] == "alice" and admin.json()["user"] == "anonymous"
    refused = service.post("/jobs", content=job_yaml("c", "true"), headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401
    listed = service.get("/history", params={"user": "alice"}, headers={"authorization": "Bearer tok-bob"})
    assert [j["name"] for j in listed.json()["jobs"]] == ["a"]


def test_history_filters_by_window_user_and_state(live_server_factory, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = Store(str(data / "suanli.db"))
    # (name, user, submitted, finished, state): a day of jobs from t = 1000 s
    for name, user, submitted, finished, state in [
        ("early", "alice", 1000.0, 2000.0, "succeeded"),
        ("middle", "bob", 3000.0, 5000.0, "failed"),
        ("late", "alice", 6000.0, 7000.0, "cancelled"),
    ]:
        job = store.add_job({"name": name, "kind": "hpc", "run": "true"}, None, now=submitted, user=user)
        if state != "cancelled":
            store.transition(job.id, "pending", "starting", now=submitted + 1)
            store.transition(job.id, "starting", "running", now=submitted + 2)
            store.transition(
                job.id, "running", state, now=finished, exit_code=0 if state == "succeeded" else 1
            )
        else:
            store.transition(job.id, "pending", "cancelled", now=finished)
    store.close()
    url = live_server_factory(data_dir=data)

    def names(*args: str) -> list[str]:
        return [j["name"] for j in json.loads(suanli("history", "--json", "--server", url, *args))]

    assert names() == ["early", "middle", "late"]
    assert names("-u", "alice") == ["early", "late"]
    assert names("-s", "CD,F") == ["early", "middle"]  # sacct's codes: completed, failed
    assert names("-S", "1970-01-01T00:00:00+00:00") == ["early", "middle", "late"]
    assert names("-S", "1970-01-01T01:00:00+00:00", "-E", "1970-01-01T01:30:00+00:00") == ["middle"]
    parsable = suanli("history", "-P", "-o", "JobID,JobName,User,State,ExitCode,Elapsed", "--server", url)
    assert parsable.splitlines() == [
        "JobID|JobName|User|State|ExitCode|Elapsed",
        "1|early|alice|succeeded|0|00:16:38",
        "2|middle|bob|failed|1|00:33:18",
        "3|late|alice|cancelled||00:00:00",
    ]
    result = runner.invoke(app, ["history", "-o", "JobID,Account", "--server", url])
    assert result.exit_code == 2 and "error: --format: unknown field 'Account'" in result.output
    assert httpx.get(f"{url}/history", params={"state": "R"}).json()["total"] == 0
    assert "(hpc, queue default, user alice): succeeded" in suanli("status", "1", "--server", url)


def test_history_window_relative_to_the_service_clock(live_server):
    job = httpx.post(f"{live_server}/jobs", content=job_yaml("now", "true")).json()
    wait_state(httpx.Client(base_url=live_server), job["id"], {"succeeded"})
    assert [
        j["id"] for j in json.loads(suanli("history", "--json", "-S", "now-1h", "--server", live_server))
    ] == [1]
    assert json.loads(suanli("history", "--json", "-E", "now-1h", "--server", live_server)) == []
    result = runner.invoke(app, ["history", "-S", "yesterday", "--server", live_server])
    assert result.exit_code == 2 and "error: yesterday: expected now, now-N[s|m|h|d]" in result.output
