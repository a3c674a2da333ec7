"""An accepted job is never lost: `kill -9` the server while jobs are being submitted, started and
finished; after a restart every acknowledged job is there, its history is one unbroken path that
ends in its current state, and scheduling resumes until all of them succeed."""

from __future__ import annotations

import threading
import time

import httpx

from tests.service.conftest import job_yaml, wait_for

VALID_NEXT = {
    None: {"pending"},
    "pending": {"starting", "cancelled", "failed"},
    "starting": {"running", "pending", "failed", "cancelled", "succeeded"},
    "running": {"succeeded", "failed", "cancelled", "pending"},
}


def _submit_until_killed(url: str, accepted: list[int], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=5) as client:
        first = len(accepted)
        for index in range(first, first + 12):
            if stop.is_set():
                return
            try:
                response = client.post("/jobs", content=job_yaml(f"d{index}", "sleep 0.2; echo done"))
            except httpx.TransportError:
                return
            if response.status_code == 201:
                accepted.append(response.json()["id"])
            time.sleep(0.03)


def _assert_consistent(client: httpx.Client, accepted: list[int]) -> dict[int, str]:
    jobs = {job["id"]: job for job in client.get("/jobs").json()}
    missing = set(accepted) - set(jobs)
    assert not missing, f"accepted jobs lost after kill -9: {sorted(missing)}"
    states = {}
    for job_id in accepted:
        job = client.get(f"/jobs/{job_id}").json()
        history = job["history"]
        previous = None
        for change in history:
            assert change["from"] == previous and change["to"] in VALID_NEXT[previous], (job_id, history)
            previous = change["to"]
        assert previous == job["state"], (job_id, history, job["state"])
        states[job_id] = previous
    return states


def test_kill_9_loses_no_accepted_job_and_scheduling_resumes(tmp_path, server_factory):
    data = tmp_path / "data"
    accepted: list[int] = []
    server = server_factory(data)
    stop = threading.Event()
    submitter = threading.Thread(target=_submit_until_killed, args=(server.url, accepted, stop))
    submitter.start()
    with server.client() as client:
        wait_for(lambda: any(j["state"] == "succeeded" for j in client.get("/jobs").json()), 20, 0.02)
    time.sleep(0.15)
    server.kill9()  # mid-stream: submissions, launches and completions in flight
    stop.set()
    submitter.join()
    restarted = server_factory(data)
    with restarted.client() as client:
        before = _assert_consistent(client, accepted)
        assert len(accepted) >= 3 and "succeeded" in before.values()
        assert set(before.values()) != {"succeeded"}, "the kill came too late to test anything"
        states = wait_for(
            lambda: (s := _assert_consistent(client, accepted)) and set(s.values()) <= {"succeeded"} and s,
            timeout_s=60,
            every_s=0.3,
        )
        assert len(states) == len(accepted)
        assert all(client.get(f"/jobs/{j}/logs").text.strip().endswith("done") for j in accepted)
