"""`suanli up --simulate CLUSTER.yaml`: the real scheduler and store over a simulated 1,024-GPU
mixed centre, in accelerated time."""

from __future__ import annotations

import time

from suanli.spec.errors import PlanInfeasible
from tests.service.conftest import REPO, wait_for, wait_state

MIXED = REPO / "examples" / "clusters" / "mixed-center.yaml"


def test_simulated_centre_schedules_and_drains(make_service):
    service = make_service(cluster_file=MIXED, simulate_speedup=3600.0)
    pools = {p["name"]: p for p in service.get("/nodes").json()["pools"]}
    assert sum(p["accelerators_total"] for p in pools.values()) == 1024
    train = "name: big\nresources: {accelerators: H100:256}\nwalltime: 2h\nrun: train\n"
    hpc = "name: cfd\nkind: hpc\nnum_nodes: 8\nresources: {cpus: 192}\nqueue: hpc\nwalltime: 1h\nrun: cfd\n"
    big = service.post("/jobs", content=train).json()
    cfd = service.post("/jobs", content=hpc).json()
    running = wait_state(service, big["id"], {"running"}, 10)
    assert running["placement"] == {
        "pool": "h100",
        "nodes": 32,
        "accelerators": 256,
        "accelerator": "h100-sxm",
        "cpus_per_node": 1.0,
        "runtime_s": None,  # a command job: the scheduler assumed its walltime
        "restart_overhead_s": 0.0,
        "throughput": None,
        "checkpoint_s": 0.0,
        "comm_share": 0.0,
        "goodput_app": None,  # no goodput profile: not resized
        "goodput_steps": None,
        "plan": None,
        "nodelist": [f"h100-{i}" for i in range(32)],
    }
    pools = {p["name"]: p for p in service.get("/nodes").json()["pools"]}
    assert pools["h100"]["accelerators_allocated"] == 256
    # a simulated hour passes in a wall second: both finish, the pools drain
    assert wait_state(service, cfd["id"], {"succeeded"}, 20)["placement"]["pool"] == "cpu"
    done = wait_state(service, big["id"], {"succeeded"}, 20)
    assert 2 * 3600 <= done["finished_at"] - done["started_at"] < 3 * 3600
    pools = {p["name"]: p for p in service.get("/nodes").json()["pools"]}
    assert pools["h100"]["accelerators_allocated"] == 0
    too_big = service.post("/jobs", content="name: huge\nresources: {accelerators: H100:4096}\nrun: x\n")
    assert too_big.status_code == 422 and "can never fit" in too_big.json()["detail"]


def test_training_jobs_are_planned_and_the_planner_is_a_service(make_service):
    service = make_service(cluster_file=MIXED, simulate_speedup=3600.0)
    body = (
        "name: llama8b\nmodel: llama3.1-8b\nresources: {accelerators: H100:64}\n"
        "training: {seq_len: 4096, global_batch_size: 256, total_tokens: 1B}\n"
    )
    job = service.post("/jobs", content=body)
    assert job.status_code == 201, job.text
    plan = job.json()["plan"]
    assert plan["accelerator"] == "h100-sxm" and plan["gpus"] == 64
    estimate = plan["estimate"]
    parts = estimate["compute_s"] + sum(estimate["exposed_comm_s"].values()) + estimate["bubble_s"]
    assert parts <= estimate["step_time_s"] + 1e-9 and 0 < estimate["mfu"] < 1
    plans = service.post("/plan", params={"top": 2}, content=body).json()
    assert len(plans) >= 1 and plans[0]["layout"] == plan["layout"]
    impossible = body.replace("llama3.1-8b", "llama3.1-405b").replace("H100:64", "H100:8")
    refused = service.post("/jobs", content=impossible)
    assert refused.status_code == PlanInfeasible.http_status and "\n" not in refused.json()["detail"]
    assert [j["name"] for j in service.get("/jobs").json()] == ["llama8b"]


def test_a_public_trace_replays_through_the_service(make_service):
    """The first Philly jobs (Jeon et al., ATC'19 trace, via suanli.sched.traces) arrive on the
    simulated clock, are scheduled on the mixed centre and finish."""
    from suanli.sched.cluster_state import ClusterState
    from suanli.sched.traces import load_trace
    from suanli.spec import Cluster, load

    trace = load_trace("philly", "", ClusterState.from_cluster(load(Cluster, MIXED)), 4)
    span_s = max(j.submit_s + j.best_runtime_s() for j in trace) - min(j.submit_s for j in trace)
    service = make_service(cluster_file=MIXED, simulate_speedup=span_s / 4, trace="philly", trace_limit=4)
    jobs = wait_for(lambda: (js := service.get("/jobs").json()) and len(js) == 4 and js, 20)
    assert [j["name"] for j in jobs] == [j.job_id for j in trace]
    assert [j["spec"]["resources"]["accelerators"][0]["count"] for j in jobs] == [j.gpus for j in trace]
    done = wait_for(
        lambda: all(service.get(f"/jobs/{j['id']}").json()["state"] == "succeeded" for j in jobs), 30
    )
    assert done
    first = service.get(f"/jobs/{jobs[0]['id']}").json()
    assert first["finished_at"] - first["started_at"] >= trace[0].best_runtime_s()
    # the policy read what the job declared (σ 0.5), the executor ran it for its true time
    placed = first["placement"]["accelerator"]
    declared = service.app.state.workload.declared[first["name"]].runtime_s[placed]
    assert first["placement"]["runtime_s"] == declared != trace[0].runtime_s[placed]


def test_the_policy_is_the_schedulers_fifo_blocks_and_backfill_fills(make_service):
    """With 256 of 384 H100s busy for 2 h and a 384-GPU job waiting, a 1-hour 64-GPU job waits under
    FIFO but is backfilled (it ends before the big job could start) under EASY backfilling."""
    outcomes = {}
    for policy in ("fifo", "backfill"):
        service = make_service(cluster_file=MIXED, simulate_speedup=60.0, policy=policy, data_dir=None)
        ids = [
            service.post(
                "/jobs",
                content=f"name: {name}\nresources: {{accelerators: H100:{n}}}\nwalltime: {wall}\nrun: x\n",
            ).json()["id"]
            for name, n, wall in (("first", 256, "2h"), ("whole-pool", 384, "1h"), ("small", 64, "1h"))
        ]
        wait_state(service, ids[0], {"running"}, 10)
        time.sleep(0.5)
        outcomes[policy] = [service.get(f"/jobs/{i}").json()["state"] for i in ids]
    assert outcomes["fifo"] == ["running", "pending", "pending"]
    assert outcomes["backfill"] == ["running", "pending", "running"]
