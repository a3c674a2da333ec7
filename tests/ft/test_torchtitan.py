"""torchtitan interoperability: a checkpoint of the runtime's state loads into a state dict named the
way torchtitan names it (pytorch/torchtitan, components/checkpoint.py and its Llama), in its
`step-N/` layout, and a checkpoint written in that layout with plain DCP loads into ours."""

from __future__ import annotations

import torch
import torch.distributed.checkpoint as dcp

from suanli.ft.checkpoint import manifest as mf
from suanli.ft.checkpoint.engine import CheckpointEngine
from suanli.ft.checkpoint.torchtitan import TorchtitanState, from_torchtitan, to_torchtitan
from suanli.runtime.model import Decoder
from suanli.spec.catalog import CATALOG

# torchtitan's Llama 3 parameter names for a 2-layer model (torchtitan/models/llama3/model.py)
TORCHTITAN_LLAMA = [
    "tok_embeddings.weight",
    *[
        f"layers.{i}.{name}.weight"
        for i in range(2)
        for name in (
            "attention.wq",
            "attention.wk",
            "attention.wv",
            "attention.wo",
            "feed_forward.w1",
            "feed_forward.w2",
            "feed_forward.w3",
            "attention_norm",
            "ffn_norm",
        )
    ],
    "norm.weight",
    "output.weight",
]


def _trained(seed: int = 0) -> TorchtitanState:
    torch.manual_seed(seed)
    model = Decoder(CATALOG.model("tiny-llama-test"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 100, (2, 8))).sum().backward()
    optimizer.step()
    return TorchtitanState(model, optimizer, tokens_per_step=256)


def test_the_runtime_decoder_names_its_parameters_as_torchtitan_does():
    names = {to_torchtitan(n) for n in _trained().model.state_dict()}
    assert names == set(TORCHTITAN_LLAMA)
    assert all(to_torchtitan(from_torchtitan(n)) == n for n in TORCHTITAN_LLAMA)


def test_our_checkpoint_loads_into_a_torchtitan_named_state_with_plain_dcp(tmp_path):
    state = _trained()
    state.step = 7
    engine = CheckpointEngine(tmp_path)
    engine.save(7, state)
    engine.close()
    assert (tmp_path / "step-7" / ".metadata").is_file()  # torchtitan's _find_load_step probe

    model = {name: torch.zeros_like(v) for name, v in state.state_dict().items() if name in TORCHTITAN_LLAMA}
    exp_avg = "state.layers.1.feed_forward.w3.weight.exp_avg"
    titan = {
        **model,
        "optimizer": {exp_avg: torch.zeros_like(state.state_dict()["optimizer"][exp_avg])},
        "train_state": {"step": 0, "ntokens_seen": 0},
    }
    dcp.load(titan, checkpoint_id=tmp_path / "step-7", no_dist=True)
    ours = state.model.state_dict()
    assert torch.equal(titan["tok_embeddings.weight"], ours["embedding.weight"])
    assert torch.equal(titan["layers.1.ffn_norm.weight"], ours["layers.1.mlp_norm.weight"])
    moment = state.optimizer.state[state.model.get_parameter("layers.1.mlp.w3.weight")]["exp_avg"]
    assert torch.equal(titan["optimizer"][exp_avg], moment)
    assert titan["train_state"] == {"step": 7, "ntokens_seen": 7 * 256}


def test_a_checkpoint_in_torchtitans_layout_loads_into_ours(tmp_path):
    source = _trained(seed=1)
    source.step = 12
    written = {
        **source.state_dict(),
        "lr_scheduler": {"last_epoch": 12},  # torchtitan's own entries, which the runtime ignores
        "dataloader": {"world_size": 1, "dp_rank_0": b"position"},
    }
    dcp.save(written, checkpoint_id=tmp_path / "step-12", no_dist=True)  # no manifest: plain DCP
    assert mf.is_foreign(CheckpointEngine(tmp_path).storage, "step-12")

    target = _trained(seed=2)
    engine = CheckpointEngine(tmp_path)
    assert engine.load(target) == 12
    assert "no checksums" in engine.restored.where
    assert target.step == 12
    for (name, a), b in zip(
        source.model.state_dict().items(), target.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
