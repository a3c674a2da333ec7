"""The controller keeps the user's spec as submitted (admission's placements live beside it, in the
job record) and marks a job it cannot place after a restart with the reason, instead of dropping it."""

from __future__ import annotations

from pathlib import Path

from suanli.service.admission import ServiceConfig, admit
from suanli.service.controller import Controller
from suanli.service.executors.base import Placement
from suanli.service.scheduling import SuanliScheduler
from suanli.service.store import Store
from suanli.spec import Cluster, JobSpec


def a100_cluster(nodes: int) -> Cluster:
    return Cluster.model_validate(
        {"name": "c", "pools": [{"name": "a100", "node_type": "hgx-a100", "nodes": nodes}]}
    )


def controller(store: Store, cluster: Cluster, tmp_path: Path) -> Controller:
    return Controller(store, None, SuanliScheduler(cluster), cluster, tmp_path / "runs")  # type: ignore[arg-type]


def spec(gpus: int) -> JobSpec:
    return JobSpec.model_validate(
        {"name": f"a{gpus}", "run": "true", "resources": {"accelerators": f"A100:{gpus}"}}
    )


def test_placements_are_stored_beside_the_spec_not_inside_it(tmp_path):
    store, cluster = Store(str(tmp_path / "jobs.db")), a100_cluster(2)
    job = controller(store, cluster, tmp_path).submit(
        spec(16), admit(spec(16), cluster, ServiceConfig()), None
    )
    stored = store.get(job.id)
    assert stored.spec == spec(16).model_dump(mode="json", by_alias=True)
    assert stored.candidates == [Placement("a100", 2, 16, "a100-sxm-80gb").to_dict()]


def test_jobs_the_shrunken_cluster_cannot_hold_are_marked_with_the_reason(tmp_path):
    store, big = Store(str(tmp_path / "jobs.db")), a100_cluster(4)
    first = controller(store, big, tmp_path)
    running = [first.submit(spec(g), admit(spec(g), big, ServiceConfig()), None) for g in (16, 8, 32)]
    waiting = first.submit(spec(32), admit(spec(32), big, ServiceConfig()), None)
    for job in running:
        placement = first._candidates(job)[0].to_dict()
        store.transition(job.id, "pending", "starting", 1.0, attempt=1, placement=placement)
        store.transition(job.id, "starting", "running", 2.0, engine_id=str(job.id))
    controller(store, a100_cluster(2), tmp_path).recover()  # back with two nodes of the four
    held, no_room, too_big = (store.get(job.id) for job in running)
    assert [job.state for job in (held, no_room, too_big)] == ["running"] * 3
    assert held.reason == ""
    unaccounted = "running unaccounted after a restart: "
    assert (
        no_room.reason
        == unaccounted + f"job {no_room.id}: no free room for its 8 slot(s) on a100-sxm-80gb to adopt it"
    )
    assert too_big.reason.startswith(unaccounted + "resources: a100:32 can never fit any pool of 'c'")
    failed = store.get(waiting.id)
    assert failed.state == "failed"
    assert failed.reason.startswith("unplaceable after a restart: resources: a100:32 can never fit any pool")
