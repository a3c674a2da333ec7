"""Training state as `Stateful` objects (state_dict / load_state_dict), the way DCP and torchtitan see it.

A state passed to the engine is a dict whose values are these objects (or any other object with
`state_dict()` and `load_state_dict()`, or plain values):

    state = {"model": ModelState(model), "optimizer": OptimizerState(model, optimizer),
             "lr_scheduler": scheduler, "dataloader": DataPosition(), "rng": RNGState()}
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)


class ModelState:
    """A model's parameters and buffers, keyed by fully qualified name (FSDP2/DTensor aware)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.model)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_model_state_dict(self.model, state)


class OptimizerState:
    """An optimizer's state keyed by parameter name, so it reshards with the model."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        return get_optimizer_state_dict(self.model, self.optimizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state)


class RNGState:
    """The torch, numpy and Python random generators of this process."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])


@dataclass
class DataPosition:
    """Where the data loader is: epoch and the index of the next batch within it."""

    epoch: int = 0
    batch_index: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch_index": self.batch_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.batch_index = int(state["batch_index"])


def is_stateful(value: Any) -> bool:
    return callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))
