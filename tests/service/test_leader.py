"""Two real `suanli up` processes on one store: exactly one leads the scheduling loop, the other
serves the API (its submissions reach the leader through the store), and when the leader is killed
with `kill -9` the other takes the lead within 10 s; no job is lost or run twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.service.conftest import job_yaml, wait_for
from tests.service.test_store import postgres_server, postgres_url  # noqa: F401 (fixtures)


def _leader(server) -> bool:
    with server.client() as client:
        return client.get("/healthz").json()["leader"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_args(request) -> list[str]:
    """SQLite in the shared data folder (a file lock), or one PostgreSQL database (an advisory lock)."""
    if request.param == "sqlite":
        return []
    return ["--db", request.getfixturevalue("postgres_url")]


def test_one_leader_and_a_kill_9_failover_loses_nothing(server_factory, tmp_path: Path, store_args):
    data = tmp_path / "data"
    first = server_factory(data, *store_args)
    second = server_factory(data, *store_args)  # the same store and run folders
    assert wait_for(lambda: _leader(first) != _leader(second), 10)
    leader, follower = (first, second) if _leader(first) else (second, first)
    ids = []
    with follower.client() as client:  # accepted by the follower, run by the leader
        for index in range(4):
            ids.append(
                client.post("/jobs", content=job_yaml(f"f{index}", "echo once >> count; sleep 2")).json()[
                    "id"
                ]
            )
        wait_for(lambda: client.get(f"/jobs/{ids[0]}").json()["state"] == "running", 15)
        leader.kill9()
        killed_s = time.monotonic()
        wait_for(lambda: client.get("/healthz").json()["leader"], 10)
        took_over_s = time.monotonic() - killed_s
        for index in range(4, 6):
            ids.append(
                client.post("/jobs", content=job_yaml(f"f{index}", "echo once >> count; sleep 2")).json()[
                    "id"
                ]
            )
        jobs = [
            wait_for(lambda i=i: (j := client.get(f"/jobs/{i}").json())["state"] == "succeeded" and j, 60)
            for i in ids
        ]
    assert took_over_s < 10
    for job in jobs:  # each ran exactly once: one attempt, one line in its run folder's count
        assert job["attempt"] == 1
        assert (data / "runs" / str(job["id"]) / "1" / "count").read_text() == "once\n"
