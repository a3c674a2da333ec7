"""Mixed-pool plans: the per-pool batch split minimises the step time, every mixed plan states the
stack that runs it (no pipeline spans two vendors' collective libraries), mirror-image pipelines
appear once, and no listed plan is beaten on time, cost and GPUs together."""

from pathlib import Path

import pytest

from suanli.perf.step import Workload, estimate_step
from suanli.plan.hetero import min_max_batch_split
from suanli.plan.objective import job_shape
from suanli.plan.search import best_plan_on_pool, search
from suanli.spec import Cluster, JobSpec, load

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def center() -> tuple[JobSpec, Cluster]:
    return (
        load(JobSpec, EXAMPLES / "jobs/llama3.1-70b-pretrain.yaml"),
        load(Cluster, EXAMPLES / "clusters/mixed-center.yaml"),
    )


@pytest.fixture(scope="module")
def every_plan(center) -> list:
    job, cluster = center
    return search(job, cluster, "time", top=10_000, pareto=False)


def slowest_group_s(shape, cluster, members, shares) -> float:
    times = []
    for plan, share in zip(members, shares, strict=True):
        part = Workload(shape.work.seq_len, share, shape.work.precision)
        times.append(estimate_step(shape.model, part, plan.layout, cluster, plan.pool).step_time_s)
    return max(times)


def test_the_three_pool_batch_split_beats_the_speed_proportional_one(center):
    """Issue 13: H100/A100/Ascend got 320/128/64 of the batch by speed, and 384/64/64 was faster.
    The min-max split is no slower than the proportional split, and no granule moved off the
    slowest group makes the step faster (it is the min-max split)."""
    job, cluster = center
    shape = job_shape(job)
    members = [best_plan_on_pool(job, cluster, pool) for pool in ("h100", "a100", "ascend")]
    shares, estimates = min_max_batch_split(shape, cluster, members, "megatron")
    assert sum(shares) == shape.work.global_batch
    solved_s = max(e.step_time_s for e in estimates)
    granules = [p.layout.dp * p.layout.micro_batch for p in members]
    speeds = [p.estimate.tokens_per_s for p in members]
    proportional = [
        max(g, round(shape.work.global_batch * v / sum(speeds) / g) * g)
        for g, v in zip(granules, speeds, strict=True)
    ]
    proportional[0] += shape.work.global_batch - sum(proportional)
    assert solved_s <= slowest_group_s(shape, cluster, members, proportional) + 1e-9
    slowest = max(range(3), key=lambda i: estimates[i].step_time_s)
    for other in range(3):
        if other == slowest or shares[slowest] - granules[slowest] < granules[slowest]:
            continue
        moved = list(shares)
        moved[slowest] -= granules[slowest]
        moved[other] += granules[slowest]
        if moved[other] % granules[other] == 0:
            assert slowest_group_s(shape, cluster, members, moved) >= solved_s - 1e-9


def test_no_pipeline_spans_two_vendors_and_every_mixed_plan_names_its_stack(every_plan, center):
    _, cluster = center
    mixed = [p for p in every_plan if p.stages]
    assert mixed
    for plan in mixed:
        vendors = {cluster.accelerator_of(s.pool).vendor for s in plan.stages}
        assert any(note.startswith("stack:") for note in plan.notes)
        if plan.stages[0].kind == "pipeline-stage":
            assert len(vendors) == 1
        elif len(vendors) > 1:
            assert "dp-cross-pool" in plan.estimate.exposed_comm_s
            assert any("host-staged" in note for note in plan.notes)


def test_mirror_image_pipelines_are_listed_once(every_plan):
    seen = set()
    for plan in (p for p in every_plan if p.stages and p.stages[0].kind == "pipeline-stage"):
        key = (
            frozenset(s.pool for s in plan.stages),
            plan.layout.tp,
            plan.layout.dp,
            plan.layout.micro_batch,
        )
        assert key not in seen
        seen.add(key)


def test_no_listed_plan_is_beaten_on_time_cost_and_gpus(center):
    job, cluster = center
    plans = search(job, cluster, "time", top=50)
    counts = [(p.time_to_train_s, p.cost, p.gpus) for p in plans]
    for mine in counts:
        assert not any(
            all(o <= m for o, m in zip(other, mine, strict=True)) and other != mine for other in counts
        )
