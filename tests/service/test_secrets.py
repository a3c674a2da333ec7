"""`envs` values named in `secret_envs` never leave the server: the run gets them, every job view,
the logs and /metrics show `<secret>` instead."""

from __future__ import annotations

from tests.service.conftest import job_yaml, wait_state

SECRET_VALUE = "hunter2-a8f3e1"


def test_a_secret_env_reaches_the_run_but_no_api_response(service):
    body = job_yaml(
        "db-job",
        "echo password=$DB_PASSWORD user=$DB_USER",
        envs=f"{{DB_PASSWORD: {SECRET_VALUE}, DB_USER: alice}}",
        secret_envs="[DB_PASSWORD]",
    )
    job = service.post("/jobs", content=body)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    done = wait_state(service, job_id, {"succeeded", "failed"}, 30)
    assert done["state"] == "succeeded", done
    assert done["spec"]["envs"] == {"DB_PASSWORD": "<secret>", "DB_USER": "alice"}
    logs = service.get(f"/jobs/{job_id}/logs").text
    assert "password=<secret> user=alice" in logs  # the run printed the real value; the API hid it
    followed = service.get(f"/jobs/{job_id}/logs", params={"follow": True}).text
    assert "password=<secret>" in followed
    for path in ("/jobs", f"/jobs/{job_id}", "/metrics", f"/jobs/{job_id}/logs"):
        assert SECRET_VALUE not in service.get(path).text, path


def test_a_secret_that_names_no_env_is_refused(service):
    refused = service.post("/jobs", content=job_yaml("x", "true", envs="{A: b}", secret_envs="[B]"))
    assert refused.status_code == 422 and "secret_envs" in refused.json()["detail"]
