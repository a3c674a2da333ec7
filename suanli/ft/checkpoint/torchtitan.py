"""torchtitan's checkpoint layout, so checkpoints move both ways between Suanli's runtime and torchtitan.

torchtitan (pytorch/torchtitan, `torchtitan/components/checkpoint.py`) saves with DCP into
`<dump_folder>/checkpoint/step-N/` one state dict whose model entries are flattened to the top
level under its Llama's names (`tok_embeddings.weight`, `layers.0.attention.wq.weight`,
`layers.0.feed_forward.w1.weight`, `layers.0.ffn_norm.weight`, `norm.weight`, `output.weight`),
beside `optimizer` (flattened per parameter: `state.<fqn>.exp_avg`, `param_groups.<fqn>.lr`),
`lr_scheduler`, `dataloader` and `train_state` (the trainer's `step` and `ntokens_seen`).

`TorchtitanState` gives the runtime's model and optimizer that layout. The runtime's learning
rate and data position are pure functions of the step, so it writes no `lr_scheduler` or
`dataloader` entry and ignores torchtitan's: load one of ours in torchtitan with
`checkpoint.exclude_from_loading = ["lr_scheduler", "dataloader"]`.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

OPTIMIZER, LR_SCHEDULER, DATALOADER, TRAIN_STATE = "optimizer", "lr_scheduler", "dataloader", "train_state"
NOT_MODEL = (OPTIMIZER, LR_SCHEDULER, DATALOADER, TRAIN_STATE)
_FLAT = StateDictOptions(flatten_optimizer_state_dict=True)
# (Suanli's `runtime.model.Decoder` name, torchtitan's Llama name), as whole dotted segments
_RENAMES = (("embedding", "tok_embeddings"), ("mlp", "feed_forward"), ("mlp_norm", "ffn_norm"))


def _rename(fqn: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        fqn = re.sub(rf"(^|\.){old}(?=\.)", rf"\g<1>{new}", fqn)
    return fqn


def to_torchtitan(fqn: str) -> str:
    """A parameter name of the runtime's decoder as torchtitan's Llama names it."""
    return _rename(fqn, _RENAMES)


def from_torchtitan(fqn: str) -> str:
    return _rename(fqn, tuple((new, old) for old, new in _RENAMES))


def _rename_optimizer_key(key: str, rename) -> str:
    """`state.<fqn>.<name>` or `param_groups.<fqn>.<name>`, with the parameter name in the middle."""
    section, rest = key.split(".", 1)
    fqn, name = rest.rsplit(".", 1)
    return f"{section}.{rename(fqn)}.{name}"


class TorchtitanState:
    """The runtime's training state (a DCP `Stateful`) in torchtitan's layout.

    `step` is the last completed optimizer step; `tokens_per_step` gives `ntokens_seen`.
    """

    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens_per_step: int
    ) -> None:
        self.model, self.optimizer, self.tokens_per_step = model, optimizer, tokens_per_step
        self.step = 0

    def state_dict(self) -> dict[str, Any]:
        model = get_model_state_dict(self.model)
        optimizer = get_optimizer_state_dict(self.model, self.optimizer, options=_FLAT)
        return {
            **{to_torchtitan(name): value for name, value in model.items()},
            OPTIMIZER: {_rename_optimizer_key(k, to_torchtitan): v for k, v in optimizer.items()},
            TRAIN_STATE: {"step": self.step, "ntokens_seen": self.step * self.tokens_per_step},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        model = {from_torchtitan(name): value for name, value in state.items() if name not in NOT_MODEL}
        set_model_state_dict(self.model, model)
        optimizer = {_rename_optimizer_key(k, from_torchtitan): v for k, v in state[OPTIMIZER].items()}
        set_optimizer_state_dict(self.model, self.optimizer, optimizer, options=_FLAT)
        self.step = int(state[TRAIN_STATE]["step"])
