"""Limits and exposure: a request-size limit (413), ids and names the store cannot hold refused with
422 (never 500), an optional read token, /plan behind the write token; and a hypothesis fuzz of job
bodies against the running API: no 500, and whatever is accepted reads back as submitted."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.service.admission import ServiceConfig
from suanli.service.store import ID_MAX, NAME_MAX
from tests.service.conftest import job_yaml


def test_bodies_over_the_limit_are_413_and_the_rest_still_work(make_service):
    service = make_service(ServiceConfig(max_body_bytes=4096))
    big = job_yaml("big", "true") + "# " + "x" * 5000 + "\n"
    assert service.post("/jobs", content=big).status_code == 413
    assert service.post("/plan", content=big).status_code == 413
    streamed = service.post("/jobs", content=iter([big.encode()[:3000], big.encode()[3000:]]))
    assert streamed.status_code == 413  # no content-length: counted as it streams
    assert service.post("/jobs", content=job_yaml("small", "true")).status_code == 201


def test_ids_and_names_the_store_cannot_hold_are_422(service):
    for job_id in (ID_MAX + 1, 10**30, 0, -1):
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/logs"):
            assert service.get(path).status_code == 422, path
        assert service.post(f"/jobs/{job_id}/cancel").status_code == 422
    assert service.get(f"/jobs/{ID_MAX}").status_code == 404
    long = service.post("/jobs", content=job_yaml("n" * (NAME_MAX + 1), "true"))
    assert long.status_code == 422 and long.json()["detail"].startswith("name: ")
    assert service.post("/jobs", content=job_yaml("n" * NAME_MAX, "true")).status_code == 201


def test_read_token_guards_reads_and_the_write_token_guards_plan(make_service):
    service = make_service(ServiceConfig(token="w", read_token="r"))
    reader, writer = {"authorization": "Bearer r"}, {"authorization": "Bearer w"}
    for path in ("/jobs", "/nodes", "/queues", "/metrics", "/ops/jobs"):
        assert service.get(path).status_code == 401, path
        assert service.get(path, headers=reader).status_code == 200, path
        assert service.get(path, headers=writer).status_code == 200, path  # writers read too
    assert service.get("/healthz").status_code == 200
    body = job_yaml("ok", "true")
    assert service.post("/jobs", content=body, headers=reader).status_code == 401
    assert service.post("/plan", content=body, headers=reader).status_code == 401
    assert service.post("/jobs", content=body, headers=writer).status_code == 201


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
JOB_KEYS = [
    "kind",
    "queue",
    "priority",
    "walltime",
    "num_nodes",
    "resources",
    "envs",
    "sharing",
]
JOBS = st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), "run": st.just("true")},
    optional={key: VALUES for key in JOB_KEYS}
    | {
        "resources": st.fixed_dictionaries(
            {}, optional={"accelerators": VALUES, "cpus": VALUES, "pool": VALUES, "memory_gb": VALUES}
        )
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=JOBS)
def test_fuzzed_jobs_are_never_a_500_and_what_is_accepted_reads_back(service, job):
    response = service.post("/jobs", content=json.dumps(job), headers={"content-type": "application/json"})
    assert response.status_code in {201, 400, 409, 422}, response.text
    detail = response.json().get("detail")
    assert "Traceback" not in json.dumps(response.json())
    if response.status_code == 201:
        stored = service.get(f"/jobs/{response.json()['id']}").json()
        assert stored["name"] == job["name"] and stored["spec"]["run"] == job["run"]
        service.post(f"/jobs/{response.json()['id']}/cancel")
    else:
        assert isinstance(detail, str) and "\n" not in detail
