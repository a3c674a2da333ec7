"""The operator's API (`/ops/*`): pages over the whole store, the service's own clock, the cluster
over time, every GPU with the job on it, and a job's figures over its steps."""

from __future__ import annotations

import time

from tests.service.conftest import REPO, wait_state

MIXED = REPO / "examples" / "clusters" / "mixed-center.yaml"


def _fill(service, count: int, queue: str = "default") -> list[int]:
    """`count` jobs written straight into the store (the scheduler never sees them: they stay pending)."""
    store = service.app.state.controller.store
    spec = {"name": "bulk", "kind": "hpc", "run": "true", "queue": queue}
    return [store.add_job({**spec, "name": f"bulk-{i}"}, None, now=1000.0 + i).id for i in range(count)]


def test_pages_reach_the_oldest_job_and_filters_count_the_whole_store(service):
    ids = _fill(service, 1200) + _fill(service, 30, queue="hpc")
    store = service.app.state.controller.store
    for job_id in ids[:5]:
        store.transition(job_id, "pending", "cancelled", reason="test")
    first = service.get("/ops/jobs", params={"limit": 100}).json()
    assert first["total"] == 1230 and first["jobs"][0]["id"] == ids[-1]
    last = service.get("/ops/jobs", params={"limit": 100, "offset": 1200}).json()
    assert last["jobs"][-1]["id"] == ids[0] and len(last["jobs"]) == 30
    oldest = service.get("/ops/jobs", params={"order": "oldest", "limit": 1}).json()["jobs"]
    assert oldest[0]["id"] == ids[0]
    pending_hpc = service.get("/ops/jobs", params={"state": "pending", "queue": "hpc"}).json()
    assert pending_hpc["total"] == 30
    finished = service.get("/ops/jobs", params={"state": "finished"}).json()
    assert finished["total"] == 5 and {j["state"] for j in finished["jobs"]} == {"cancelled"}
    assert service.get("/ops/jobs", params={"limit": 5000}).status_code == 422
    queues = service.get("/ops/overview").json()["queues"]
    assert queues["default"] == {"pending": 1195, "cancelled": 5} and queues["hpc"] == {"pending": 30}


def test_the_clock_is_the_services_own_under_simulate(make_service):
    service = make_service(cluster_file=MIXED, simulate_speedup=3600.0)
    time.sleep(0.5)
    now = service.get("/ops/overview").json()["now"]
    assert now > time.time() + 600  # half a wall second is half a simulated hour ahead
    job = service.post("/jobs", content="name: w\nkind: hpc\nresources: {cpus: 8}\nrun: x\n").json()
    page = service.get("/ops/jobs").json()
    assert page["now"] >= job["submitted_at"]  # an age computed from it is never negative


def test_pending_depth_over_time_ends_at_todays_count(service):
    ids = _fill(service, 6)
    store = service.app.state.controller.store
    store.transition(ids[0], "pending", "cancelled")
    store.transition(ids[1], "pending", "failed", reason="boom")
    series = service.get("/ops/series", params={"window_s": 1e12}).json()
    depths = [depth for _, depth in series["pending"]]
    assert depths[0] == 0 and max(depths) == 6 and depths[-1] == 4
    assert [f["job_id"] for f in series["failures"]] == [ids[1]]


def test_every_gpu_a_job_holds_names_it(make_service):
    service = make_service(cluster_file=MIXED, simulate_speedup=60.0)
    body = "name: big\nresources: {accelerators: H100:16}\nwalltime: 10h\nrun: train\n"
    job = service.post("/jobs", content=body).json()
    wait_state(service, job["id"], {"running"}, 10)
    nodes = service.get("/ops/gpus").json()["nodes"]
    held = [(n["name"], g["gpu"]) for n in nodes for g in n["gpus"] if job["id"] in g["jobs"]]
    assert len(held) == 16 and {name.split("-")[0] for name, _ in held} == {"h100"}
    states = {g["state"] for n in nodes for g in n["gpus"]}
    assert states == {"idle", "busy"}
    assert sum(len(n["gpus"]) for n in nodes if n["accelerator"] != "cpu") == 1024


def test_a_jobs_figures_over_its_steps_beside_its_plan(service):
    (job_id,) = _fill(service, 1)
    store = service.app.state.controller.store
    store.set_fields(job_id, plan={"estimate": {"step_time_s": 0.5, "mfu": 0.4}})
    samples = [
        (1000.0 + s, {"event": "step", "step": s, "loss": 5.0 / s, "step_time_s": 0.6, "mfu": 0.33})
        for s in range(1, 501)
    ]
    samples.append((1501.0, {"step": 500, "checkpoint": "/ckpt/500"}))
    store.add_metrics(job_id, samples, 1)
    series = service.get(f"/ops/jobs/{job_id}/series").json()
    loss = series["steps"]["loss"]
    assert 100 < len(loss) <= 240 and loss[0] == [1.0, 5.0] and loss[-1] == [500.0, 0.01]
    assert series["predicted_step_time_s"] == 0.5 and series["steps"]["step_time_s"][0][1] == 0.6
    assert "tokens_per_s" not in series["steps"]
    assert series["checkpoints"] == [{"at": 1501.0, "step": 500, "path": "/ckpt/500"}]
    assert service.get("/ops/jobs/99999/series").status_code == 404


def test_a_waiting_job_says_why_as_slurm_names_it(make_service):
    """FIFO on the mixed centre: the whole H100 pool runs one job; a second whole-pool job waits for
    `Resources`; an 8-GPU A100 job behind it would fit now but FIFO keeps the order: `Priority`."""
    service = make_service(cluster_file=MIXED, simulate_speedup=1.0, policy="fifo")
    whole = "name: {name}\nresources: {{accelerators: H100:384}}\nwalltime: 100h\nrun: t\n"
    first = service.post("/jobs", content=whole.format(name="first")).json()
    wait_state(service, first["id"], {"running"}, 10)
    second = service.post("/jobs", content=whole.format(name="second")).json()
    small = "name: small\nresources: {accelerators: A100:8}\nwalltime: 1h\nrun: t\n"
    third = service.post("/jobs", content=small).json()
    time.sleep(1.0)  # several scheduling ticks
    waiting = service.get("/ops/jobs", params={"state": "pending", "order": "oldest"}).json()["jobs"]
    reasons = {j["id"]: j["pending_reason"] for j in waiting}
    assert reasons == {second["id"]: "Resources", third["id"]: "Priority"}
    running = service.get("/ops/jobs", params={"state": "running"}).json()["jobs"]
    assert [j["pending_reason"] for j in running] == [None]
