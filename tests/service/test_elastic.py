"""Elastic jobs in the live service (issue 12 item 5, issue 15 item 2): a job whose spec gives a width
range and whose candidates carry a goodput profile is resized by the `elastic` policy; the controller
stops the run, records the move and restarts it at the new width, and a Sia trace replayed through
the service with `--elastic` gives `suanli sim --elastic`'s figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from suanli.service.admission import ServiceConfig, admit
from suanli.service.controller import Controller
from suanli.service.executors.base import Placement
from suanli.service.executors.simulated import EventClock, SimulatedExecutor
from suanli.service.scheduling import SuanliScheduler, sched_id
from suanli.service.store import Store
from suanli.spec import Cluster, JobSpec, SpecError, load
from tests.service.conftest import SIA, replay_and_sim

CIFAR10_STEPS = 1e6  # far more work than the test runs: no job ends during it


def elastic_spec(name: str, widths: str = "1..16", accelerator: str = "a100-sxm-40gb") -> JobSpec:
    return JobSpec.model_validate(
        {"name": name, "run": "x", "walltime": "100h", "resources": {"accelerators": {accelerator: widths}}}
    )


def with_profile(candidates: list[Placement], app: str = "cifar10") -> list[Placement]:
    return [dataclasses.replace(p, goodput_app=app, goodput_steps=CIFAR10_STEPS) for p in candidates]


def elastic_controller(tmp_path: Path) -> tuple[Controller, EventClock, Cluster]:
    cluster = load(Cluster, SIA)
    clock = EventClock()
    controller = Controller(
        Store(str(tmp_path / "jobs.db")),
        SimulatedExecutor(clock),
        SuanliScheduler(cluster, "elastic"),
        cluster,
        tmp_path / "runs",
        clock=clock,
    )
    return controller, clock, cluster


def test_a_job_alone_grows_then_shrinks_for_newcomers_and_each_move_is_recorded(tmp_path):
    controller, clock, cluster = elastic_controller(tmp_path)
    spec = elastic_spec("first")
    first = controller.submit(spec, with_profile(admit(spec, cluster, ServiceConfig())), None)
    controller.step()
    alone = controller.store.get(first.id)
    assert alone.state == "running"
    wide = alone.placement["accelerators"]
    assert wide > 1  # alone on 16 A100s, widening pays

    others = [elastic_spec(f"other{i}") for i in range(6)]
    for other in others:
        controller.submit(other, with_profile(admit(other, cluster, ServiceConfig())), None)
    clock.advance_to(60.0)  # the policy's next round
    controller.step()

    job = controller.store.get(first.id, with_history=True)
    assert job.state == "running" and job.attempt == 2
    narrow = job.placement["accelerators"]
    assert narrow < wide
    resized = [t for t in job.history if t["reason"].startswith("resized by elastic")]
    assert [(t["from"], t["to"]) for t in resized] == [("running", "pending")]
    before, after = alone.placement["nodes"], job.placement["nodes"]
    assert resized[0]["reason"] == (
        f"resized by elastic: {wide} × a100-sxm-40gb on {before} node(s) of a100"
        f" → {narrow} × a100-sxm-40gb on {after} node(s) of a100, restarting from its last checkpoint"
    )
    assert [t["to"] for t in job.history][-2:] == ["starting", "running"]
    # the scheduler holds the new width, and the simulated engine runs the new attempt only
    state = controller.scheduler.inner.jobs[sched_id(first.id)]
    assert state.job.width_on("a100-sxm-40gb") == narrow and state.starts == 2
    assert controller.executor.poll(controller.run_of(job)).state == "running"
    old = dataclasses.replace(controller.run_of(job), attempt=1)
    assert controller.executor.poll(old).state == "failed"  # stopped
    in_use = sum(j.placement["accelerators"] for j in controller.store.list_jobs(states={"running"}))
    assert in_use <= 16


def test_a_restarted_server_holds_a_resized_job_at_the_width_it_runs(tmp_path):
    controller, clock, cluster = elastic_controller(tmp_path)
    spec = elastic_spec("first")
    first = controller.submit(spec, with_profile(admit(spec, cluster, ServiceConfig())), None)
    controller.step()
    for i in range(6):
        other = elastic_spec(f"other{i}")
        controller.submit(other, with_profile(admit(other, cluster, ServiceConfig())), None)
    clock.advance_to(60.0)
    controller.step()
    narrow = controller.store.get(first.id).placement["accelerators"]
    assert 1 < narrow < 16  # neither the width it asks for nor the one it had

    restarted = Controller(
        controller.store,
        SimulatedExecutor(clock),
        SuanliScheduler(cluster, "elastic"),
        cluster,
        tmp_path / "runs",
    )
    restarted.recover()
    state = restarted.scheduler.inner.jobs[sched_id(first.id)]
    assert state.status == "running" and state.job.width_on("a100-sxm-40gb") == narrow
    assert state.job.elastic is not None  # still resizable


def test_without_a_goodput_profile_a_width_range_runs_rigid_at_its_count(tmp_path):
    controller, _, cluster = elastic_controller(tmp_path)
    spec = elastic_spec("rigid", "4..16")
    job = controller.submit(spec, admit(spec, cluster, ServiceConfig()), None)
    controller.step()
    assert controller.store.get(job.id).placement["accelerators"] == 4


def test_a_goodput_profile_the_accelerator_was_never_measured_on_is_refused_in_one_line(tmp_path):
    cluster = Cluster.model_validate(
        {"name": "c", "pools": [{"name": "h100", "node_type": "hgx-h100", "nodes": 1}]}
    )
    spec = elastic_spec("h", accelerator="h100")
    scheduler = SuanliScheduler(cluster, "elastic")
    with pytest.raises(SpecError) as refused:
        scheduler.submit(1, spec, with_profile(admit(spec, cluster, ServiceConfig())), 0.0)
    assert str(refused.value).startswith("job 1: goodput profile 'cifar10' has no measurements on h100")


@pytest.mark.parametrize("policy", ["elastic", "gavel"])  # gavel runs each job at the width it asks for
def test_an_elastic_sia_replay_through_the_service_gives_suanli_sims_figures(tmp_path, policy):
    args = ["--trace", "sia-philly", "--workload", "1", "--limit", "10", "--policy", policy]
    args += ["--elastic", "--json"]
    service, sim = replay_and_sim(tmp_path, args)
    assert service["elastic"] is True and service["jobs_finished"] == sim["jobs_finished"] == 10
    assert sim["restarts_per_job"] > 1  # resized or preempted: the comparison covers restarts
    assert abs(service["avg_jct_h"] - sim["avg_jct_h"]) <= 0.05 * sim["avg_jct_h"]
    assert service["restarts_per_job"] == pytest.approx(sim["restarts_per_job"])


# each attempt logs its width and the step it resumes from (the job's own checkpoint file, shared by
# its attempts), then counts steps into it until it is stopped
COUNTING_JOB = (
    'ckpt="$SUANLI_RUN_DIR/../step"; n=$(cat "$ckpt" 2>/dev/null || echo 0); '
    'echo "$SUANLI_ATTEMPT $SUANLI_NUM_ACCELERATORS $n" >> "$SUANLI_RUN_DIR/../attempts"; '
    'while true; do n=$((n+1)); echo $n > "$ckpt.tmp" && mv "$ckpt.tmp" "$ckpt"; sleep 0.05; done'
)


def test_the_local_executor_relaunches_a_resized_job_at_its_new_width_from_its_checkpoint(tmp_path):
    from suanli.service.executors.local import LocalExecutor
    from tests.service.conftest import process_alive, wait_for

    cluster = load(Cluster, SIA)
    clock = EventClock()  # the policy's 60 s rounds, stepped by hand; the runs are real processes
    controller = Controller(
        Store(str(tmp_path / "jobs.db")),
        LocalExecutor(),
        SuanliScheduler(cluster, "elastic"),
        cluster,
        tmp_path / "runs",
        clock=clock,
    )
    spec = JobSpec.model_validate(
        {"name": "counter", "run": COUNTING_JOB, "resources": {"accelerators": {"a100-sxm-40gb": "1..16"}}}
    )
    job = controller.submit(spec, with_profile(admit(spec, cluster, ServiceConfig())), None)
    attempts = tmp_path / "runs" / str(job.id) / "attempts"
    checkpoint = tmp_path / "runs" / str(job.id) / "step"
    try:
        controller.step()
        wide = controller.store.get(job.id).placement["accelerators"]
        wait_for(lambda: checkpoint.exists() and int(checkpoint.read_text() or 0) >= 3)
        for i in range(6):
            other = elastic_spec(f"other{i}")
            controller.submit(
                other.model_copy(update={"run": "sleep 600"}),
                with_profile(admit(other, cluster, ServiceConfig())),
                None,
            )
        clock.advance_to(60.0)
        controller.step()
        resized = controller.store.get(job.id)
        narrow = resized.placement["accelerators"]
        assert resized.attempt == 2 and narrow < wide
        wait_for(lambda: attempts.exists() and len(attempts.read_text().splitlines()) == 2)
        first, second = (line.split() for line in attempts.read_text().splitlines())
        assert first == ["1", str(wide), "0"]
        assert second[:2] == ["2", str(narrow)] and int(second[2]) >= 3  # resumed, not from scratch
        assert not process_alive(int((tmp_path / "runs" / str(job.id) / "1" / "pid").read_text()))
    finally:
        for running in controller.store.list_jobs(states={"running"}):
            controller.executor.cancel(controller.run_of(running))
