"""The live scheduler sees what the simulator's policies see: per-type run times from the planner
(declared work ÷ predicted throughput), so heterogeneity is respected; and the queue keeps its order
across restarts (submit time, then the numeric job id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.service.admission import ServiceConfig, admit, local_cluster
from suanli.service.controller import Controller
from suanli.service.planning import plan_job, search_plans, with_runtimes
from suanli.service.scheduling import DEFAULT_POLICY, SuanliScheduler
from suanli.service.store import Store
from suanli.spec import Cluster, JobSpec, SpecError, load
from suanli.spec.errors import PlanInfeasible
from tests.service.conftest import REPO

TWO_POOLS = REPO / "tests" / "service" / "data" / "two-pools.yaml"
# A100 listed first: only the planner's per-type estimate can send it to the faster H100
EITHER = {
    "name": "either",
    "kind": "training",
    "model": "llama2-7b",  # compute-bound on two GPUs: the planner puts H100 well ahead of A100
    "training": {"total_tokens": "1B", "seq_len": 1024, "global_batch_size": 16},
    "resources": {"accelerators": {"A100": 2, "H100": 2}},
    "run": "sleep 1",
}


def test_a_job_with_alternatives_goes_to_the_faster_pool_then_to_the_other():
    cluster = load(Cluster, TWO_POOLS)
    spec = JobSpec.model_validate(EITHER)
    candidates = with_runtimes(spec, cluster, admit(spec, cluster, ServiceConfig()))
    runtime_s = {c.pool: c.runtime_s for c in candidates}
    assert runtime_s["h100"] is not None and runtime_s["a100"] is not None
    assert runtime_s["h100"] < 0.8 * runtime_s["a100"]
    scheduler = SuanliScheduler(cluster)
    assert scheduler.policy == DEFAULT_POLICY == "suanli"
    pools = []
    for job_id in (1, 2, 3):
        scheduler.submit(job_id, spec, candidates, float(job_id))
        placed = [d.placement for d in scheduler.tick(float(job_id)) if d.placement]
        pools.append([p.pool for p in placed])
        # the run trains with the plan of the pool and count it got, on the nodes the scheduler chose
        assert all(p.plan and (p.plan["pool"], p.plan["gpus"]) == (p.pool, 2) for p in placed)
        assert all(p.nodelist == [f"{p.pool}-0"] and p.node_indices() == [0] for p in placed)
    assert pools == [["h100"], ["a100"], []]  # the third waits: both pools are full


def test_a_plan_across_pools_is_never_what_a_gang_on_one_pool_runs():
    """The planner's best plan for llama3.1-8b on {A100: 2, H100: 2} pipelines over both pools (4
    GPUs); the scheduler places a gang on one pool, so the service keeps the best one-pool plan, and a
    job no one-pool plan fits is refused with the planner's reason."""
    cluster = load(Cluster, TWO_POOLS)
    spec = JobSpec.model_validate({**EITHER, "model": "llama3.1-8b"})
    assert search_plans(spec, cluster, "time", 1)[0]["pool"] is None  # across pools
    stored = plan_job(spec, cluster)
    assert stored is not None and (stored["pool"], stored["gpus"]) == ("h100", 2)
    too_big = JobSpec.model_validate({**EITHER, "model": "llama2-13b"})
    with pytest.raises(PlanInfeasible, match=r"^plan: no plan on one pool fits .*needs ≥ 0\.23 TB"):
        plan_job(too_big, cluster)


def test_pending_jobs_keep_submit_order_and_numeric_ids_across_a_restart(tmp_path: Path):
    """Twelve one-node jobs queued behind a running one; after a restart FIFO starts 2, 3, … 12, 13
    (never 10 before 2, as string ids would, nor by the restart's time)."""
    store = Store(str(tmp_path / "jobs.db"))
    cluster = load(Cluster, TWO_POOLS)
    spec = JobSpec.model_validate({"name": "one", "run": "true", "resources": {"accelerators": "H100:2"}})
    clock = iter(range(100, 10_000)).__next__
    first = Controller(store, None, SuanliScheduler(cluster, "fifo"), cluster, tmp_path / "runs", clock=clock)  # type: ignore[arg-type]
    jobs = [first.submit(spec, admit(spec, cluster, ServiceConfig()), None) for _ in range(13)]
    head = jobs[0]
    placement = first._candidates(head)[0].to_dict()
    store.transition(head.id, "pending", "starting", 1.0, attempt=1, placement=placement)
    store.transition(head.id, "starting", "running", 2.0, engine_id="x")
    restarted = SuanliScheduler(cluster, "fifo")
    second = Controller(store, None, restarted, cluster, tmp_path / "runs", clock=lambda: 50_000.0)  # type: ignore[arg-type]
    second.recover()
    order = []
    running = head.id
    for now in range(13):
        restarted.job_finished(running, 60_000.0 + now)
        started = [d.job_id for d in restarted.tick(60_000.0 + now) if d.placement]
        order += started
        running = started[0] if started else running
    assert order == [job.id for job in jobs[1:]] == list(range(2, 14))


def test_only_the_default_cluster_scales_a_cpu_job_down_to_this_machine():
    """A job for a site's CPU partition (4 nodes of 192 CPUs of pool `cpu`) runs on the one-node
    default cluster; a cluster file takes requests as written and refuses what it cannot hold."""
    lammps = load(JobSpec, REPO / "examples" / "jobs" / "hpc-lammps.yaml")
    [here] = admit(lammps, local_cluster(), ServiceConfig())
    assert (here.pool, here.nodes) == ("local", 1) and here.cpus_per_node <= local_cluster().node_types[
        0
    ].cpu_cores
    with pytest.raises(SpecError, match=r"resources\.pool: unknown pool 'cpu'"):
        admit(lammps, load(Cluster, TWO_POOLS), ServiceConfig())


def test_the_live_loop_ticks_often_but_the_policy_decides_on_its_own_cadence(make_service):
    """The controller ticks every 50 ms; `Scheduler.tick` runs a pass only when something changed (or
    a round or the policy's own deadline is due), so an idle service makes no scheduling passes and a
    submission makes one — the simulator's decisions, later by at most a tick."""
    import time

    from tests.service.conftest import job_yaml, wait_for, wait_state

    service = make_service(tick_s=0.05)
    scheduler = service.app.state.controller.scheduler.inner
    wait_for(lambda: scheduler.decision_s, 20)  # a new scheduler passes once, when the loop first runs
    idle = len(scheduler.decision_s)
    time.sleep(0.5)  # about ten ticks
    assert len(scheduler.decision_s) == idle
    job = service.post("/jobs", content=job_yaml("one", "sleep 30")).json()
    wait_state(service, job["id"], {"running"}, 10)
    passes = len(scheduler.decision_s)
    assert 1 <= passes - idle <= 2
    time.sleep(0.3)  # running, nothing changes: no pass
    assert len(scheduler.decision_s) == passes
    service.post(f"/jobs/{job['id']}/cancel")


def test_each_run_trains_with_the_plan_of_the_pool_it_got(make_service):
    """Two model jobs that accept {A100: 2, H100: 2} on the simulated two-pool cluster: the first goes to
    H100, the second to A100, and each run's trainer config carries the plan for its own pool."""
    import yaml

    from tests.service.conftest import wait_state

    service = make_service(cluster_file=TWO_POOLS, simulate_speedup=60.0)
    body = {k: v for k, v in EITHER.items() if k != "run"} | {"model": "llama3.1-8b"}
    for pool in ("h100", "a100"):
        job = service.post("/jobs", json=body)
        assert job.status_code == 201, job.text
        placed = wait_state(service, job.json()["id"], {"running"}, 20)["placement"]
        runs = service.app.state.settings.data_dir / "runs" / str(job.json()["id"]) / "1"
        plan = yaml.safe_load((runs / "train.yaml").read_text())["plan"]
        assert placed["pool"] == pool and (plan["pool"], plan["gpus"]) == (pool, 2)
