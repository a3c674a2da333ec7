"""Per-queue submit tokens: a queue of the service YAML may name its own token; a submit to that queue
needs it (or the service's write token), and that token submits to its queue only."""

from __future__ import annotations

from suanli.service.admission import QueueConfig, ServiceConfig
from tests.service.conftest import job_yaml


def _config(write_token: str | None) -> ServiceConfig:
    return ServiceConfig(
        queues={"default": QueueConfig(), "research": QueueConfig(token="research-key")}, token=write_token
    )


def _submit(service, queue: str, token: str | None) -> int:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return service.post("/jobs", content=job_yaml("j", "true", queue=queue), headers=headers).status_code


def test_a_queue_with_its_own_token_needs_it(make_service):
    service = make_service(_config("admin-key"))
    assert _submit(service, "research", None) == 401
    assert _submit(service, "research", "research-key") == 201
    assert _submit(service, "research", "admin-key") == 201
    assert _submit(service, "research", "wrong") == 401
    assert _submit(service, "default", "research-key") == 401  # a queue's token opens that queue only
    assert _submit(service, "default", "admin-key") == 201
    assert _submit(service, "default", None) == 401


def test_on_an_open_service_only_the_token_queue_is_closed(make_service):
    service = make_service(_config(None))
    assert _submit(service, "default", None) == 201
    refused = service.post("/jobs", content=job_yaml("j", "true", queue="research"))
    assert (
        refused.status_code == 401 and "queue 'research' needs its submit token" in refused.json()["detail"]
    )
    assert _submit(service, "research", "research-key") == 201
    assert [job["queue"] for job in service.get("/jobs").json()] == ["default", "research"]
    queues = service.get("/queues")
    assert "research-key" not in queues.text
    assert {q["name"]: q["submit_token_required"] for q in queues.json()} == {
        "default": False,
        "research": True,
    }
