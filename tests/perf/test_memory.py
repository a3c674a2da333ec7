"""Memory per GPU against Korthikanti et al. 2022 and Megatron-LM's distributed-optimizer table."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.perf import memory as mem
from suanli.perf.memory import (
    StageParams,
    in_flight_micro_batches,
    korthikanti_layer_activation_bytes,
    layer_activation_bytes,
    model_state_bytes,
)
from suanli.perf.step import Workload, estimate_step
from suanli.spec import CATALOG, Cluster, Layout, ModelSpec

GPT3 = ModelSpec(
    slug="gpt3",
    name="GPT-3 175B",
    n_layers=96,
    hidden=12288,
    n_heads=96,
    ffn_hidden=4 * 12288,
    gated_mlp=False,
    vocab=51200,
    max_seq_len=2048,
)


@pytest.mark.parametrize("tp", [1, 2, 8])
def test_gpt_layer_activations_match_korthikanti(tp):
    """Korthikanti et al. 2022, Table 2 (TP + SP): s·b·h·(34/t + 5·a·s/(h·t)) bytes per layer."""
    ours = layer_activation_bytes(GPT3, 0, 2048, 1, tp, 1, True, "none", flash_attention=False, dropout=True)
    assert ours == pytest.approx(korthikanti_layer_activation_bytes(2048, 1, 12288, 96, tp), rel=1e-9)


def test_gpt3_attention_term_dominates_as_published():
    """Korthikanti et al. 2022, sec. 4.1: for GPT-3 175B, 5as/h = 80 against 34 for the rest."""
    assert 5 * 96 * 2048 / 12288 == 80
    full = korthikanti_layer_activation_bytes(2048, 1, 12288, 96, 1)
    assert full == pytest.approx(2048 * 12288 * (34 + 80))


def test_full_recompute_keeps_only_the_layer_input():
    """Korthikanti et al. 2022, sec. 4.3: full recomputation stores 2·s·b·h per layer (/t with SP)."""
    assert layer_activation_bytes(GPT3, 0, 2048, 1, 8, 1, True, "full") == 2 * 2048 * 12288 / 8


@pytest.mark.parametrize("dp", [1, 8, 64])
def test_distributed_optimizer_bytes_per_parameter(dp):
    """Megatron-LM docs (distributed optimizer): bf16 params + fp32 grads = 6 + 12/d bytes per
    parameter; without it (ZeRO 0) 18."""
    params = StageParams(dense=1e9, expert=0.0, largest_layer=1e8)
    zero1 = model_state_bytes(params, Layout(dp=dp, zero_stage=1), fp8=False)
    zero0 = model_state_bytes(params, Layout(dp=dp, zero_stage=0), fp8=False)
    assert sum(zero1.values()) / 1e9 == pytest.approx(6 + 12 / dp)
    assert sum(zero0.values()) / 1e9 == pytest.approx(18)


def test_interleaving_holds_more_micro_batches():
    """Korthikanti et al. 2022, sec. 4.2.3: the first stage holds pp micro-batches, ×(1 + (p−1)/(p·v))
    with interleaving."""
    assert in_flight_micro_batches(Layout(pp=8, dp=1), 64) == 8
    assert in_flight_micro_batches(Layout(pp=8, vpp=4, dp=1), 64) == pytest.approx(8 * (1 + 7 / 32))


def _cluster(nodes: int = 8) -> Cluster:
    return Cluster.model_validate(
        {"name": "t", "pools": [{"name": "h100", "node_type": "hgx-h100", "nodes": nodes}]}
    )


def test_405b_on_one_node_is_rejected_with_memory_as_the_reason():
    estimate = estimate_step(
        CATALOG.model("llama3.1-405b"), Workload(8192, 8), Layout(tp=8, dp=1), _cluster(1), "h100"
    )
    assert not estimate.fits
    assert estimate.binding == "memory"
    assert estimate.memory_gb_per_gpu > 80


@settings(max_examples=15, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2, 4]),
    recompute=st.sampled_from(["none", "selective", "full"]),
    extra_gb=st.floats(min_value=1, max_value=200),
)
def test_a_plan_that_fits_still_fits_with_more_memory(tp, pp, recompute, extra_gb):
    model = CATALOG.model("llama3.1-8b")
    layout = Layout(tp=tp, pp=pp, dp=64 // (tp * pp), recompute=recompute)
    base = _cluster()
    accel = CATALOG.accelerator("h100").model_copy(update={"slug": "h100-big", "memory_gb": 80 + extra_gb})
    node = base.node_type_of("h100").model_copy(update={"slug": "hgx-big", "accelerator": "h100-big"})
    bigger = Cluster.model_validate(
        {
            "name": "t",
            "pools": [{"name": "h100", "node_type": "hgx-big", "nodes": 8}],
            "node_types": [node.model_dump()],
            "accelerators": [accel.model_dump()],
        }
    )
    work = Workload(8192, 512)
    small = estimate_step(model, work, layout, base, "h100", efficiency=0.8)
    large = estimate_step(model, work, layout, bigger, "h100", efficiency=0.8)
    if small.fits:
        assert large.fits


@pytest.mark.parametrize(("accelerator", "fp8_copy"), [("a100-sxm-80gb", False), ("h100-sxm", True)])
def test_fp8_weight_copy_is_held_only_where_fp8_runs(accelerator, fp8_copy):
    """The one FP8 rule: TransformerEngine's 1-byte weight copy is held on accelerators with FP8
    tensor cores; an fp8 job on an A100 trains in 16 bits and needs what a bf16 job needs."""
    model, layout = CATALOG.model("llama3.1-8b"), Layout(tp=2, pp=2, dp=4)
    accel = CATALOG.accelerator(accelerator)
    counts, stages = [16, 16], [accel, accel]

    def needed(precision: str) -> mem.MemoryFit:
        return mem.pipeline_fit(model, layout, counts, stages, 4096, 8, precision)

    fp8, bf16 = needed("fp8"), needed("bf16")
    params = mem.stage_params(model, list(range(16)), fp8.stage == 0, fp8.stage == 1, 2, 1).total
    assert fp8.stage == bf16.stage
    assert fp8.needed_bytes - bf16.needed_bytes == pytest.approx(params * mem.FP8_WEIGHT_BYTES * fp8_copy)
    assert mem.runs_fp8(accel, "fp8") is fp8_copy


def test_pipeline_fit_checks_the_stage_that_starts_each_accelerator_type():
    """1F1B: stage i holds pp − i micro-batches, so the first stage of each run of one type (and the
    last, with the logits) bounds memory; by share of capacity the fullest can sit mid-pipeline."""
    model, layout = CATALOG.model("llama3.1-8b"), Layout(tp=1, pp=4, dp=2)
    big, small = CATALOG.accelerator("h100-sxm"), CATALOG.accelerator("a100-sxm-40gb")

    def stage_gb(i: int, accelerators: list) -> float:
        used = mem.stage_memory_bytes(
            model, list(range(8 * i, 8 * i + 8)), i, layout, 4096, 16, accelerators[i], "bf16"
        )
        return sum(used.values()) / mem.GB

    mixed = [big, small, small, big]
    fit = mem.pipeline_fit(model, layout, [8] * 4, mixed, 4096, 16, "bf16")
    shares = [stage_gb(i, mixed) / mixed[i].memory_gb for i in range(4)]
    assert fit.stage == 1 == max(range(4), key=shares.__getitem__)
    assert fit.needed_bytes / mem.GB == pytest.approx(stage_gb(1, mixed)) and fit.fits
    alone = mem.pipeline_fit(model, layout, [8] * 4, [big] * 4, 4096, 16, "bf16")
    assert alone.stage == 0 and alone.needed_bytes / mem.GB == pytest.approx(stage_gb(0, [big] * 4))


@pytest.mark.parametrize("stack", ["any", "torchtitan"])
def test_the_loss_buffers_and_the_recomputed_layer_never_coexist(stack):
    """The loss's buffers live from the end of the forward pass to the start of the backward pass;
    the recomputed layer only afterwards. Under full recompute the last stage adds the larger of
    the two to its stored layer inputs, never their sum."""
    layout = Layout(tp=1, pp=1, dp=8, zero_stage=3, micro_batch=1, recompute="full")
    accelerator = CATALOG.accelerator("h100-sxm")
    model = CATALOG.model("llama3.1-8b")
    layers = list(range(model.n_layers))
    used = mem.stage_memory_bytes(model, layers, 0, layout, 32768, 1, accelerator, "bf16", stack)
    stored = model.n_layers * layer_activation_bytes(model, 0, 32768, 1, 1, 1, False, "full")
    loss = mem.logits_bytes(model, 32768, 1, 1, 1, stack)
    layer = layer_activation_bytes(model, 0, 32768, 1, 1, 1, False, "none")
    assert used["activations"] == pytest.approx(stored + max(loss, layer))


def test_an_all_gather_ring_holds_every_ranks_kv_while_a_layer_runs():
    """PyTorch's _AllGatherRotater (torchtitan) materialises the K/V of all CP ranks for the layer
    being computed — 2.1 GB for Llama 3.1 405B at 256k on TP8 CP8 (repeat_kv: 16 heads of 128 per
    rank) — plus fp32 gradient accumulators; Megatron-Core's p2p ring holds one chunk in flight."""
    model = CATALOG.model("llama3.1-405b")
    cp8 = Layout(tp=8, pp=8, dp=1, cp=8, micro_batch=1, recompute="full")
    gathered = 262144 * 2 * 16 * 128 * 2
    accumulators = 32768 * (16 * 128 + 2 * 16 * 128) * 4
    assert mem.ring_buffer_bytes(model, cp8, 262144, "torchtitan") == pytest.approx(gathered + accumulators)
    assert mem.ring_buffer_bytes(model, cp8, 262144, "megatron") == 0
    assert mem.ring_buffer_bytes(model, cp8.model_copy(update={"cp": 1}), 32768, "torchtitan") == 0
