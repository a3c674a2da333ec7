"""The decoder built from a ModelSpec: parameter counts agree with the spec, attention is causal."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.runtime.model import Decoder, apply_rope, rope_tables
from suanli.spec import CATALOG, ModelSpec, SpecError


def parameters(spec: ModelSpec) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Decoder(spec).parameters())


@pytest.mark.parametrize(
    "slug", ["llama3.1-8b", "mixtral-8x7b", "gpt3-175b", "qwen2.5-7b", "tiny-llama-test"]
)
def test_catalog_models_have_the_parameters_the_spec_counts(slug: str) -> None:
    spec = CATALOG.model(slug)
    assert parameters(spec) == spec.param_count()


@settings(max_examples=25, deadline=None)
@given(
    layers=st.integers(1, 3),
    kv_heads=st.sampled_from([1, 2, 4]),
    group=st.integers(1, 3),
    head_dim=st.sampled_from([4, 8]),
    ffn=st.integers(1, 64),
    gated=st.booleans(),
    tied=st.booleans(),
    experts=st.sampled_from([0, 2, 4]),
)
def test_any_small_spec_has_the_parameters_it_counts(
    layers: int, kv_heads: int, group: int, head_dim: int, ffn: int, gated: bool, tied: bool, experts: int
) -> None:
    heads = kv_heads * group
    moe = {"experts": experts, "top_k": 2, "expert_ffn_hidden": ffn, "shared_experts": 1} if experts else None
    spec = ModelSpec(
        slug="prop",
        name="prop",
        n_layers=layers,
        hidden=heads * head_dim,
        n_heads=heads,
        n_kv_heads=kv_heads,
        ffn_hidden=ffn,
        gated_mlp=gated,
        vocab=50,
        max_seq_len=16,
        tied_embeddings=tied,
        moe=moe,
    )
    assert parameters(spec) == spec.param_count()


def test_a_token_never_sees_the_future() -> None:
    torch.manual_seed(0)
    spec = CATALOG.model("tiny-llama-test")
    model = Decoder(spec).eval()
    tokens = torch.randint(0, spec.vocab, (1, 12))
    changed = tokens.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % spec.vocab
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[0, :8], after[0, :8])
    assert not torch.allclose(before[0, 8:], after[0, 8:])


def test_moe_model_trains_end_to_end() -> None:
    tiny = CATALOG.model("tiny-llama-test").model_dump()
    spec = ModelSpec.model_validate(tiny | {"moe": {"experts": 4, "top_k": 2, "expert_ffn_hidden": 32}})
    model = Decoder(spec)
    loss = model(torch.randint(0, spec.vocab, (2, 8))).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.layers["0"].mlp.router.parameters())


@settings(max_examples=30, deadline=None)
@given(position=st.integers(0, 127), seed=st.integers(0, 1000))
def test_rope_rotates_without_changing_length(position: int, seed: int) -> None:
    cos, sin = rope_tables(128, 16)
    x = torch.randn(1, 1, 1, 16, generator=torch.Generator().manual_seed(seed))
    rotated = apply_rope(x, cos[position : position + 1], sin[position : position + 1])
    torch.testing.assert_close(rotated.norm(), x.norm())


def test_rope_scores_depend_only_on_relative_position() -> None:
    cos, sin = rope_tables(64, 8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> torch.Tensor:
        return (
            apply_rope(q, cos[i : i + 1], sin[i : i + 1]) * apply_rope(k, cos[j : j + 1], sin[j : j + 1])
        ).sum()

    torch.testing.assert_close(score(10, 3), score(40, 33))


def test_multi_latent_attention_is_refused_in_one_line() -> None:
    with pytest.raises(SpecError, match="multi-latent attention"):
        Decoder(CATALOG.model("deepseek-v3"))
