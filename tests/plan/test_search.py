"""The planner: ranked feasible plans, reasons when there are none, heterogeneous plans, export."""

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.perf.calibration import STACK_AGNOSTIC
from suanli.perf.compute import hardware
from suanli.perf.step import estimate_step
from suanli.plan.export import emit, megatron_args
from suanli.plan.objective import job_shape
from suanli.plan.search import search
from suanli.plan.space import MEMORY_SAVERS, cheapest_fitting, structural_layouts, targets
from suanli.spec import CATALOG, Cluster, JobSpec, SpecError, load
from suanli.spec.datasets import dataset_path
from suanli.spec.errors import PlanInfeasible

runner = CliRunner()


@pytest.fixture
def mixed(examples) -> Cluster:
    return load(Cluster, examples / "clusters/mixed-center.yaml")


@pytest.fixture
def job70b(examples) -> JobSpec:
    return load(JobSpec, examples / "jobs/llama3.1-70b-pretrain.yaml")


@pytest.fixture(scope="module")
def plans70b():
    examples = Path(__file__).parents[2] / "examples"
    job = load(JobSpec, examples / "jobs/llama3.1-70b-pretrain.yaml")
    return search(
        job, load(Cluster, examples / "clusters/mixed-center.yaml"), "time", top=6, heterogeneous=False
    )


def small_job(**fields) -> JobSpec:
    """Llama 3.1 8B on 32 accelerators of any of three types: quick to plan."""
    spec = {
        "name": "small",
        "model": "llama3.1-8b",
        "resources": {"accelerators": {"H100": 32, "A100": 32, "Ascend-910B": 32}},
        "training": {"seq_len": 4096, "global_batch_size": 256, "total_tokens": "100B"},
    }
    return JobSpec.model_validate(spec | fields)


def test_single_pool_plans_fit_and_are_ranked_by_time(plans70b, mixed):
    plans = plans70b
    assert plans
    speeds = [p.estimate.tokens_per_s for p in plans]
    assert speeds == sorted(speeds, reverse=True)
    for plan in plans:
        accel = mixed.accelerator_of(plan.pool)
        assert plan.estimate.fits and plan.estimate.memory_gb_per_gpu <= accel.memory_gb
        assert plan.layout.world_size == plan.gpus == 256
        assert plan.time_to_train_s == pytest.approx(2e12 / plan.estimate.tokens_per_s)


def test_cost_objective_ranks_by_cost(mixed):
    plans = search(small_job(), mixed, "cost", top=4, heterogeneous=False)
    costs = [p.cost for p in plans]
    assert costs == sorted(costs)


def test_mixed_plans_say_whether_they_beat_the_best_single_pool(mixed):
    plans = search(small_job(), mixed, "time", top=60, pareto=False)
    mixed_plans = [p for p in plans if p.stages]
    assert {s.kind for p in mixed_plans for s in p.stages} == {"pipeline-stage", "data-parallel-group"}
    for plan in mixed_plans:
        assert any("best single pool" in note for note in plan.notes)
        if plan.stages[0].kind == "pipeline-stage":
            assert sum(s.layers for s in plan.stages) == 32


def test_405b_on_a_small_pool_says_why_nothing_fits(mixed):
    job = JobSpec.model_validate(
        {"name": "big", "model": "llama3.1-405b", "resources": {"accelerators": "H100:16"}, "training": {}}
    )
    with pytest.raises(PlanInfeasible, match=r"needs ≥ .* TB .* hold"):
        search(job, mixed)


def test_layouts_divide_evenly(job70b, mixed):
    shape = job_shape(job70b)
    found, _ = targets(job70b, mixed)
    target = next(t for t in found if t.pool == "h100")
    for layout in structural_layouts(shape.model, shape.work, target, job70b.parallelism):
        assert layout.tp * layout.pp * layout.cp * layout.dp == 256
        assert 512 % layout.dp == 0 and 8 % layout.tp == 0
        assert shape.model.n_layers % (layout.pp * layout.vpp) == 0 or layout.vpp == 1


def test_fixed_degrees_are_respected(mixed):
    job = JobSpec.model_validate(
        {
            "name": "fixed",
            "model": "llama3.1-8b",
            "resources": {"accelerators": "A100:64"},
            "training": {"seq_len": 4096, "global_batch_size": 256},
            "parallelism": {"tensor_parallel_degree": 2, "pipeline_parallel_degree": 1},
        }
    )
    plans = search(job, mixed, top=10)
    assert all(p.layout.tp == 2 and p.layout.pp == 1 for p in plans)


def test_emitted_torchtitan_toml_matches_the_plan(job70b, plans70b):
    plan = plans70b[0]
    shape = job_shape(job70b)
    config = tomllib.loads(emit(plan, "torchtitan", shape.model, 8192, 512, "bf16"))
    par = config["parallelism"]
    assert par["tensor_parallel_degree"] == plan.layout.tp
    assert par["pipeline_parallel_degree"] == plan.layout.pp
    assert par["data_parallel_shard_degree"] * par["data_parallel_replicate_degree"] == plan.layout.dp
    assert config["training"]["global_batch_size"] == 512


def test_megatron_args_carry_the_layout(plans70b):
    plan = plans70b[0]
    args = megatron_args(plan, CATALOG.model("llama3.1-70b"), 8192, 512, "bf16")
    assert f"--tensor-model-parallel-size {plan.layout.tp}" in args
    assert "--num-query-groups 8" in args and "--swiglu" in args


def test_cli_plan_prints_ranked_plans_and_json(examples):
    args = [
        "plan",
        str(examples / "jobs/llama3.1-70b-pretrain.yaml"),
        "--cluster",
        str(examples / "clusters/mixed-center.yaml"),
    ]
    result = runner.invoke(app, [*args, "--single", "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    plans = json.loads(result.output)
    assert 1 <= len(plans) <= 3 and all(p["estimate"]["fits"] for p in plans)
    table = runner.invoke(app, [*args, "--single", "--top", "2"])
    assert table.exit_code == 0 and "MFU" in table.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nmodel: llama3.1-70b\ntraining: {seq_len: -3}\n", "training.seq_len"),
        ("name: x\nmodel: no-such-model\n", "unknown model"),
        ("name: [oops\n", "invalid YAML"),
    ],
)
def test_cli_plan_bad_job_file_is_one_line(tmp_path, examples, content, message):
    job = tmp_path / "job.yaml"
    job.write_text(content)
    result = runner.invoke(app, ["plan", str(job), "--cluster", str(examples / "clusters/mixed-center.yaml")])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_plan_bad_cluster_and_objective(tmp_path, examples):
    job = str(examples / "jobs/llama3.1-70b-pretrain.yaml")
    missing = runner.invoke(app, ["plan", job, "--cluster", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output
    bad = tmp_path / "c.yaml"
    bad.write_text("name: c\npools: [{name: p, node_type: hgx-h100, nodes: -1}]\n")
    result = runner.invoke(app, ["plan", job, "--cluster", str(bad)])
    assert result.exit_code == 2 and "nodes" in result.output
    objective = runner.invoke(
        app, ["plan", job, "--cluster", str(examples / "clusters/mixed-center.yaml"), "--objective", "vibes"]
    )
    assert objective.exit_code == 2 and "--objective" in objective.output


def test_cli_perf_predict_json_lists_predicted_and_missing():
    sample = dataset_path("training_runs/training_runs.csv")
    result = runner.invoke(app, ["perf", "predict", str(sample), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    ids = {p["id"] for p in out["predictions"]}
    assert "dgxc-llama3.1-70b-bf16-64" in ids
    keys = {"id", "mfu", "step_time_s", "tokens_per_s_per_gpu", "tflops_per_gpu", "memory_gb_per_gpu", "fits"}
    assert all(keys <= set(p) for p in out["predictions"])
    skipped = {s["id"]: s["missing"] for s in out["not_predicted"]}
    assert "hidden" in skipped["nemo2407-GPT3-5B-64"]
    assert any("gpu" in m for m in skipped["ascend-modellink-llama3-8b-reference"])


def test_cli_perf_predict_missing_file(tmp_path):
    result = runner.invoke(app, ["perf", "predict", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_best_plan_on_each_pool_orders_accelerators_by_speed(mixed):
    """For schedulers: the same job is fastest on H100, then A100 (989 vs 312 TFLOPS peaks)."""
    from suanli.plan.search import best_plan_on_pool

    job = small_job()
    h100 = best_plan_on_pool(job, mixed, "h100", gpus=32)
    a100 = best_plan_on_pool(job, mixed, "a100", gpus=32)
    assert h100 is not None and a100 is not None
    assert h100.estimate.tokens_per_s > 2 * a100.estimate.tokens_per_s
    with pytest.raises(SpecError, match="no accelerators"):
        best_plan_on_pool(job, mixed, "cpu")


def test_pipeline_across_pools_gives_faster_stages_more_layers(mixed):
    plans = search(small_job(), mixed, "time", top=200, pareto=False)
    pipelines = [p for p in plans if p.stages and p.stages[0].kind == "pipeline-stage"]
    assert pipelines
    for plan in pipelines:
        per_stage = {s.pool: s.layers / (s.gpus // (plan.layout.tp * plan.layout.dp)) for s in plan.stages}
        if "h100" in per_stage and "a100" in per_stage:
            assert per_stage["h100"] >= per_stage["a100"]


def test_memory_pruning_and_the_step_estimate_apply_one_rule(mixed):
    """`cheapest_fitting` keeps a layout's cheapest memory saver that fits; the step estimate must
    agree: that saver fits and every cheaper one does not (both read `perf.memory.pipeline_fit`)."""
    job = small_job(
        resources={"accelerators": "H100:64"},
        training={"seq_len": 4096, "global_batch_size": 256, "precision": "fp8"},
    )
    shape = job_shape(job)
    (target,), _ = targets(job, mixed)
    hw = hardware(target.accelerator, shape.work.precision)
    # two-stage pipelines at micro-batch 2 sit at the edge of H100 memory for this job
    layouts = structural_layouts(shape.model, shape.work, target, job.parallelism)
    kept = 0
    for layout in (x for x in layouts if x.pp == 2 and x.micro_batch == 2):
        fitting = cheapest_fitting(
            shape.model, shape.work, layout, hw, target.accelerator, job.parallelism, STACK_AGNOSTIC
        )
        chosen = (fitting.recompute, fitting.zero_stage) if fitting else None
        tried = MEMORY_SAVERS[: MEMORY_SAVERS.index(chosen) + 1] if chosen else MEMORY_SAVERS
        for recompute, zero in tried:
            candidate = layout.model_copy(update={"recompute": recompute, "zero_stage": zero})
            fits = estimate_step(shape.model, shape.work, candidate, mixed, "h100").fits
            assert fits == ((recompute, zero) == chosen), (candidate, chosen)
        kept += chosen is not None
    assert kept > 0  # some layouts fit, so both sides of the rule are exercised


def _nicless_cluster(nodes: int) -> Cluster:
    """H100 boxes with NVSwitch inside and no NICs: nothing leaves a node."""
    box = {
        "slug": "box",
        "name": "8x H100, no NICs",
        "accelerator": "h100-sxm",
        "accelerators_per_node": 8,
        "topology": {"kind": "nvswitch", "link_bw_gb_s": 450, "link_latency_us": 0.8, "link": "nvlink4"},
        "nics": [],
        "cpu_cores": 64,
        "memory_gb": 1024,
        "source": "test",
    }
    return Cluster.model_validate(
        {
            "name": "nicless",
            "pools": [{"name": "box", "node_type": "box", "nodes": nodes}],
            "node_types": [box],
            "fabric": {"kind": "rail-optimized"},
        }
    )


def test_a_node_without_nics_plans_within_one_node_and_refuses_more():
    """A NIC-less node type is a single-node machine: 8 GPUs plan, 16 are refused in one line
    (it was a division by zero in the collective model)."""
    job = small_job(resources={"accelerators": {"H100": 8}})
    plans = search(job, _nicless_cluster(2), "time", top=1)
    assert plans[0].gpus == 8
    with pytest.raises(PlanInfeasible, match=r"no NICs, so 16 accelerators cannot span"):
        search(small_job(resources={"accelerators": {"H100": 16}}), _nicless_cluster(2), "time")
    with pytest.raises(SpecError, match="no NICs"):
        estimate_step(
            CATALOG.model("llama3.1-8b"),
            job_shape(small_job()).work,
            plans[0].layout.model_copy(update={"dp": 16}),
            _nicless_cluster(2),
            "box",
        )
