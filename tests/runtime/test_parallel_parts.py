"""The pieces of N-D parallelism, each against its definition: mesh coordinates, layer splits,
stage pruning, MoE capacity and load-balance loss, ring attention and the expert all-to-all
(two forked gloo ranks against the single-process computation), and the gradient-norm clip."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from suanli.runtime.config import MoEOptions
from suanli.runtime.model import Decoder, MoE, local_dispatch, switch_balance_loss, within_capacity
from suanli.runtime.parallel.grads import clip_grad_norm
from suanli.runtime.parallel.mesh import Coordinates, coordinates, rank_of
from suanli.runtime.parallel.pipeline import prune, stage_layers, union
from suanli.spec import CATALOG, Layout, ModelSpec

TINY = CATALOG.model("tiny-llama-test")
FIVE = TINY.model_copy(update={"n_layers": 5})
MOE_SPEC = ModelSpec.model_validate(
    TINY.model_dump() | {"moe": {"experts": 4, "top_k": 2, "expert_ffn_hidden": 16}}
)


@given(tp=st.integers(1, 4), pp=st.integers(1, 4), dp=st.integers(1, 4), cp=st.integers(1, 3))
def test_every_rank_has_one_place_in_the_grid(tp: int, pp: int, dp: int, cp: int) -> None:
    layout = Layout(tp=tp, pp=pp, dp=dp, cp=cp)
    places = [coordinates(rank, layout) for rank in range(layout.world_size)]
    assert len(set(places)) == layout.world_size
    assert all(rank_of(c, layout) == rank for rank, c in enumerate(places))
    if tp > 1:  # tensor-parallel ranks are adjacent (one node), pipeline stages outermost
        assert places[1] == Coordinates(pp=0, dp=0, cp=0, tp=1)
    assert places[-1].pp == pp - 1


def test_126_layers_over_16_stages_split_within_one_layer_the_head_stage_lighter() -> None:
    spans = stage_layers(CATALOG.model("llama3.1-405b"), Layout(pp=16), 8192)
    sizes = [len(s) for s in spans]
    assert sum(sizes) == 126 and max(sizes) - min(sizes) == 1
    assert [i for span in spans for i in span] == list(range(126))
    assert sizes[-1] == min(sizes)  # the last stage also runs the LM head
    assert [len(s) for s in stage_layers(FIVE, Layout(pp=2, vpp=2), 64)] == [1, 1, 2, 1]


def test_stages_keep_the_whole_models_parameter_names() -> None:
    model = Decoder(FIVE)
    spans = stage_layers(FIVE, Layout(pp=2, vpp=2), 8)
    stages = [prune(model, spans[s], s == 0, s == 3) for s in range(4)]
    assert [len(span) for span in spans] == [1, 1, 2, 1]
    assert set(stages[1].state_dict()) == {k for k in model.state_dict() if k.startswith("layers.1.")}
    held = union(model, [stages[0], stages[2]])  # pipeline rank 0 of 2 holds stages 0 and 2
    assert {k.split(".")[1] for k in held.state_dict() if k.startswith("layers.")} == {"0", "2", "3"}
    assert held.layers["3"] is stages[2].layers["3"]  # held, not copied: the optimizer steps the stage
    tokens = torch.randint(0, TINY.vocab, (2, 8))
    hidden = tokens
    for stage in stages:
        hidden = stage(hidden)
    torch.testing.assert_close(hidden, model(tokens))


@settings(max_examples=40, deadline=None)
@given(
    tokens=st.integers(1, 64), experts=st.integers(2, 8), factor=st.floats(0.25, 2.0), seed=st.integers(0, 99)
)
def test_no_expert_accepts_more_than_its_capacity(
    tokens: int, experts: int, factor: float, seed: int
) -> None:
    top_k = min(2, experts)
    chosen = torch.rand(tokens, experts, generator=torch.Generator().manual_seed(seed)).topk(top_k).indices
    kept = within_capacity(chosen, experts, factor)
    capacity = -(-factor * tokens * top_k // experts)
    counts = torch.bincount(chosen[kept], minlength=experts)
    assert int(counts.max()) <= capacity
    for expert in range(experts):  # the first arrivals are the ones kept (token order)
        arrivals = kept.flatten()[chosen.flatten() == expert]
        assert not (~arrivals[:-1] & arrivals[1:]).any()
    assert within_capacity(chosen, experts, None).all()


def test_balance_loss_is_one_when_balanced_and_experts_when_collapsed() -> None:
    experts = 4
    uniform = torch.full((8, experts), 1 / experts)
    round_robin = torch.arange(16).view(8, 2) % experts
    assert float(switch_balance_loss(uniform, round_robin, experts)) == pytest.approx(1.0)
    collapsed = torch.zeros(8, experts)
    collapsed[:, 0] = 1.0
    assert float(
        switch_balance_loss(collapsed, torch.zeros(8, 1, dtype=torch.long), experts)
    ) == pytest.approx(experts)


def test_the_balance_loss_gradient_reaches_the_router() -> None:
    """The layer's output carries the loss's gradient: backward of sum(out) equals backward of
    sum(out) + coefficient · balance loss computed by hand."""
    torch.manual_seed(0)
    options = MoEOptions(balance_loss_coefficient=0.5)
    layer, x = MoE(MOE_SPEC, options), torch.randn(2, 6, MOE_SPEC.hidden)
    layer(x).sum().backward()
    through_hook = layer.router.weight.grad.clone()
    layer.zero_grad()
    layer.options = MoEOptions(balance_loss_coefficient=0.0)
    probs = layer.router(x.reshape(-1, x.shape[-1])).softmax(-1)
    by_hand = layer(x).sum() + 0.5 * switch_balance_loss(probs, probs.topk(2).indices, 4)
    by_hand.backward()
    torch.testing.assert_close(through_hook, layer.router.weight.grad)


def test_clip_scales_to_the_norm_torch_computes() -> None:
    torch.manual_seed(0)
    first, second, x = nn.Linear(4, 4), nn.Linear(4, 4), torch.randn(3, 4)
    second.load_state_dict(first.state_dict())
    for module in (first, second):
        module(x).pow(2).sum().backward()
    norm = clip_grad_norm(list(first.parameters()), 0.1, torch.device("cpu"))
    assert norm == pytest.approx(float(nn.utils.clip_grad_norm_(second.parameters(), 0.1)), rel=1e-6)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def _two_ranks(rank: int, port: int, failures: "mp.Queue") -> None:  # type: ignore[type-arg]
    from suanli.runtime.parallel.context import RingCausalAttention
    from suanli.runtime.parallel.expert import shard_experts

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # ring attention over two halves of the sequence == causal attention over all of it
        generator = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(2, 4, 12, 8, generator=generator, requires_grad=True) for _ in range(3))
        full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        (full * torch.arange(full.numel()).view_as(full).sin()).sum().backward()
        half = slice(rank * 6, rank * 6 + 6)
        q2, k2, v2 = (t.detach()[:, :, half].clone().requires_grad_() for t in (q, k, v))
        ring = RingCausalAttention(dist.group.WORLD)(q2, k2, v2)
        torch.testing.assert_close(ring, full[:, :, half])
        (ring * torch.arange(full.numel()).view_as(full).sin()[:, :, half]).sum().backward()
        for mine, whole in ((q2, q), (k2, k), (v2, v)):
            torch.testing.assert_close(mine.grad, whole.grad[:, :, half])
        # experts over two ranks == all experts here, for every rank's tokens and the gradients
        torch.manual_seed(1)
        reference = Decoder(MOE_SPEC)
        sharded = Decoder(MOE_SPEC)
        sharded.load_state_dict(reference.state_dict())
        shard_experts(sharded, dist.group.WORLD)
        layer, whole_layer = sharded.layers["0"].mlp, reference.layers["0"].mlp
        x = torch.randn(3, 5, MOE_SPEC.hidden, generator=torch.Generator().manual_seed(rank))
        out = layer(x)
        torch.testing.assert_close(out, whole_layer(x))
        out.square().sum().backward()
        whole_layer(x).square().sum().backward()
        # each rank's expert gradient gathers both ranks' tokens: compare with the sum of both
        mine = [f"{rank * 2 + i}" for i in range(2)]
        for key in ("0", "1", "2", "3"):  # every rank reduces every expert, in the same order
            expected = whole_layer.experts[key].w1.weight.grad.clone()
            dist.all_reduce(expected)
            if key in mine:
                torch.testing.assert_close(layer.experts[key].w1.weight.grad, expected)
        assert set(layer.experts.keys()) == set(mine)
        assert local_dispatch is not layer.dispatch
    except AssertionError as error:
        failures.put(f"rank {rank}: {error}")
    finally:
        dist.destroy_process_group()


def test_ring_attention_and_expert_all_to_all_equal_the_single_process_computation() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failures = mp.get_context("fork").Queue()
    mp.start_processes(_two_ranks, args=(port, failures), nprocs=2, start_method="fork")
    assert failures.empty(), failures.get()
