"""The durable store on SQLite and on PostgreSQL (Debian's server, started here on loopback)."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.service.store import ALLOWED_TRANSITIONS, Store
from tests.service.conftest import apt_install, job_yaml, wait_for, wait_state

STATES = ["pending", "starting", "running", "succeeded", "failed", "cancelled"]


def _initdb() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def postgres_server():
    if _initdb() is None:
        reason = apt_install("postgresql")
        if reason or _initdb() is None:
            pytest.skip(f"PostgreSQL cannot be installed here: {reason}")
    bin_dir = Path(_initdb()).parent
    base = Path(tempfile.mkdtemp(prefix="suanli-pg-", dir="/tmp"))
    shutil.chown(base, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
        line = " ".join(f"'{part}'" for part in command)
        return subprocess.run(["su", "-s", "/bin/sh", "postgres", "-c", line], capture_output=True, text=True)

    init = as_postgres(f"{bin_dir}/initdb", "-D", f"{base}/data", "--auth=trust", "-U", "postgres")
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr.strip()[-200:]}")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=on"
    started = as_postgres(
        f"{bin_dir}/pg_ctl", "-D", f"{base}/data", "-l", f"{base}/log", "-o", options, "-w", "start"
    )
    if started.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()[-200:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(f"{bin_dir}/pg_ctl", "-D", f"{base}/data", "-m", "immediate", "stop")  # a throwaway DB
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the module's server."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = str(tmp_path / "s.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.close()


def _spec(name: str = "j") -> dict:
    return {"name": name, "kind": "hpc", "queue": "default", "priority": 0, "run": "true"}


def test_transitions_are_compare_and_set(store):
    job = store.add_job(_spec(), None)
    assert store.transition(job.id, "pending", "starting", attempt=1, placement={"pool": "p"})
    assert not store.transition(job.id, "pending", "cancelled")  # it already moved on
    results = []
    racers = [
        threading.Thread(target=lambda s=s: results.append(store.transition(job.id, "starting", s)))
        for s in ("running", "cancelled", "failed", "pending")
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(results) == [False, False, False, True]
    final = store.get(job.id, with_history=True)
    assert [h["to"] for h in final.history] == ["pending", "starting", final.state]
    assert final.attempt == 1 and final.placement == {"pool": "p"}
    with pytest.raises(ValueError, match="not a valid transition"):
        store.transition(job.id, "succeeded", "running")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=st.lists(st.tuples(st.sampled_from(STATES[:3]), st.sampled_from(STATES)), max_size=12))
def test_history_is_always_a_path_ending_in_the_state(store, attempts):
    """Whatever transitions are tried, in any order, the stored history is an unbroken chain of
    allowed moves that ends in the job's current state."""
    job = store.add_job(_spec(), None)
    for source, target in attempts:
        if target in ALLOWED_TRANSITIONS.get(source, ()):
            store.transition(job.id, source, target)
    final = store.get(job.id, with_history=True)
    previous = None
    for change in final.history:
        assert change["from"] == previous
        assert previous is None or change["to"] in ALLOWED_TRANSITIONS[previous]
        previous = change["to"]
    assert previous == final.state
    if final.state in {"succeeded", "failed", "cancelled"}:
        assert final.finished_at is not None


def test_metrics_checkpoints_and_pool_history(store):
    job = store.add_job(_spec(), None)
    store.add_metrics(job.id, [(1.0, {"step": 1, "mfu": 0.3}), (2.0, {"step": 2, "checkpoint": "/c/2"})], 77)
    assert store.get(job.id).metrics_offset == 77
    assert [m["step"] for m in store.metrics(job.id)] == [1, 2]
    assert store.latest_metrics([job.id])[job.id]["checkpoint"] == "/c/2"
    assert store.checkpoints(job.id) == [{"at": 2.0, "step": 2, "path": "/c/2"}]
    store.add_pool_samples(10.0, {"a": (2, 8)})
    store.add_pool_samples(11.0, {"a": (8, 8)})
    assert store.pool_history(since=10.5) == {"a": [[11.0, 1.0]]}


def test_service_on_postgresql_survives_a_restart(make_service, postgres_url):
    first = make_service(db_url=postgres_url)
    done = first.post("/jobs", content=job_yaml("pg-done", "echo pg")).json()
    wait_state(first, done["id"], {"succeeded"})
    waiting = first.post("/jobs", content=job_yaml("pg-long", "sleep 30")).json()
    wait_state(first, waiting["id"], {"running"})
    queued = first.post("/jobs", content=job_yaml("pg-queued", "echo later")).json()
    first.__exit__(None, None, None)  # the server goes away with one job running, one queued
    second = make_service(db_url=postgres_url)
    assert second.get(f"/jobs/{done['id']}").json()["state"] == "succeeded"
    assert second.get(f"/jobs/{waiting['id']}").json()["state"] == "running"  # adopted, still running
    second.post(f"/jobs/{waiting['id']}/cancel")
    assert wait_state(second, queued["id"], {"succeeded"})["state"] == "succeeded"
    assert second.get(f"/jobs/{queued['id']}/logs").text.strip() == "later"
    assert wait_for(lambda: second.get(f"/jobs/{waiting['id']}").json()["state"] == "cancelled")


def test_an_unreachable_database_is_a_one_line_error_without_the_password():
    from suanli.spec.errors import StoreError

    with pytest.raises(StoreError, match=r"--db: cannot open the store at .*:\*\*\*@127.0.0.1:1/") as error:
        Store("postgresql://someone:hunter2@127.0.0.1:1/suanli")
    assert "hunter2" not in str(error.value) and "\n" not in str(error.value)


def test_a_store_keeps_its_own_id_and_runs_are_keyed_by_it(tmp_path):
    """Run keys (Slurm job names, Ray submission ids) name the store: two stores share an engine."""
    from suanli.service.executors.base import Placement, Run
    from suanli.spec import JobSpec

    first, second = Store(str(tmp_path / "a.db")), Store(str(tmp_path / "b.db"))
    ids = first.store_id, second.store_id
    first.close()
    assert Store(str(tmp_path / "a.db")).store_id == ids[0] != ids[1]
    spec = JobSpec.model_validate({"name": "j", "run": "true"})
    keys = {Run(1, 1, spec, Placement("local", 1), tmp_path, "true", store_id=i).key for i in ids}
    assert len(keys) == 2
