"""Pipeline parallelism on `torch.distributed.pipelining`: 1F1B (PipeDream-Flush, Narayanan et al.
2021) or interleaved 1F1B with `vpp` virtual stages per rank, over layer splits that need not be
even (126 layers do not divide by 16).

Stage s of pp·vpp holds a contiguous span of layers and sits on pipeline rank s mod pp (the looped
placement of the interleaved schedule). Each stage is the decoder with the other stages' parts
removed, so parameter names stay those of the whole model and checkpoints reshard across layouts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B
from torch.distributed.pipelining.schedules import _PipelineSchedule as PipelineSchedule

from suanli.perf.flops import layer_flops, lm_head_flops
from suanli.perf.pipeline import split_layers, stage_layer_indices
from suanli.runtime.model import Decoder
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout


def stage_layers(spec: ModelSpec, layout: Layout, seq_len: int) -> list[list[int]]:
    """Layer indices of each of the pp·vpp stages, split by the planner's rule (`split_layers`) with
    the LM head's FLOPs charged to the last stage, in layers."""
    stages = layout.pp * layout.vpp
    extra = [0.0] * stages
    extra[-1] = lm_head_flops(spec) / layer_flops(spec, spec.n_layers - 1, seq_len).total
    return stage_layer_indices(split_layers(spec.n_layers, [1.0] * stages, extra))


def prune(model: Decoder, layers: list[int], first: bool, last: bool) -> Decoder:
    """A copy of `model` holding only `layers` (and the embedding / head when first / last)."""
    stage = copy.deepcopy(model)
    for key in list(stage.layers.keys()):
        if int(key) not in layers:
            del stage.layers[key]
    if not first:
        stage.embedding = None
    if not last:
        stage.norm, stage.output = None, None
    return stage


def union(model: Decoder, stages: list[Decoder]) -> Decoder:
    """One module holding (not copying) every part of this rank's stages under the whole model's
    names: what the optimizer steps and the checkpoint saves."""
    held = prune(model, [], first=False, last=False)
    for stage in stages:
        for key, block in stage.layers.items():
            held.layers[key] = block
        if stage.embedding is not None:
            held.embedding = stage.embedding
        if stage.norm is not None:
            held.norm, held.output = stage.norm, stage.output
    return held


@dataclass
class Pipeline:
    stages: list[Decoder]
    schedule: PipelineSchedule
    has_last_stage: bool


def build_pipeline(
    model_stages: list[tuple[int, Decoder]],
    layout: Layout,
    n_micro: int,
    loss_fn: nn.Module,
    device: object,
    group: object,
) -> Pipeline:
    """The schedule over this rank's `(stage index, stage module)` pairs."""
    total = layout.pp * layout.vpp
    stages = [
        PipelineStage(module, index, total, device, group=group)  # type: ignore[arg-type]
        for index, module in model_stages
    ]
    schedule: PipelineSchedule
    if layout.vpp > 1:
        schedule = ScheduleInterleaved1F1B(stages, n_micro, loss_fn=loss_fn)  # type: ignore[arg-type]
    else:
        schedule = Schedule1F1B(stages[0], n_micro, loss_fn=loss_fn)
    return Pipeline(
        stages=[module for _, module in model_stages],
        schedule=schedule,
        has_last_stage=any(index == total - 1 for index, _ in model_stages),
    )
