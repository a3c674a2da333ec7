"""A layout applied to the decoder, and one optimizer step of it.

`build` turns (model, layout) into a `ParallelModel`: pure data parallelism stays DDP or FSDP2; any
other layout gets a device mesh, then expert sharding, ring attention, pipeline stages, tensor
parallelism and FSDP2/HSDP in that order, each on PyTorch's own building blocks. `train_step` runs
this rank's micro-batches (through the pipeline schedule when pp > 1), reduces gradients, clips and
steps, and returns the loss of the whole global batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from suanli.runtime.config import MoEOptions, ParallelOptions
from suanli.runtime.data import BatchLoader
from suanli.runtime.devices import synchronize
from suanli.runtime.model import Attention, Decoder, MoE
from suanli.runtime.parallel.context import RingCausalAttention
from suanli.runtime.parallel.expert import shard_experts
from suanli.runtime.parallel.grads import Reduction, clip_grad_norm
from suanli.runtime.parallel.mesh import Mesh, build_mesh
from suanli.runtime.parallel.pipeline import Pipeline, build_pipeline, prune, stage_layers, union
from suanli.runtime.parallel.tensor import parallelize_decoder
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout


def language_model_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@dataclass
class ParallelModel:
    module: nn.Module  # this rank's parameters under the whole model's names: optimizer, checkpoint
    layout: Layout
    dp_rank: int = 0
    mesh: Mesh | None = None
    pipeline: Pipeline | None = None
    reductions: list[Reduction] = field(default_factory=list)
    expert_params: list[nn.Parameter] = field(default_factory=list)
    slowdown: float = 1.0

    @property
    def holds_loss(self) -> bool:
        return self.pipeline is None or self.pipeline.has_last_stage

    def context_slice(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This context-parallel rank's contiguous slice of every sequence."""
        if self.mesh is None or self.layout.cp == 1:
            return inputs, targets
        chunk = inputs.shape[1] // self.layout.cp
        start = self.mesh.coords.cp * chunk
        for module in self.module.modules():
            if isinstance(module, Decoder):
                module.position_offset = start
        return inputs[:, start : start + chunk], targets[:, start : start + chunk]

    def train_step(
        self,
        optimizer: torch.optim.Optimizer,
        loader: BatchLoader,
        step: int,
        device: torch.device,
        autocast: torch.autocast,
        grad_clip: float | None,
        before_update: Callable[[], float] = lambda: 0.0,
    ) -> tuple[float, float, float]:
        """One optimizer step: (the global batch's mean loss, seconds this rank waited for data,
        seconds `before_update` blocked). `before_update` runs between the backward pass and the
        optimizer step (a checkpoint copy of the parameters may still be running until then)."""
        # each micro-batch's loss is weighted by its share of the global batch, and gradients are
        # averaged over data-parallel ranks: with uneven shares the update is still the even one
        weight = loader.micro_batch * self.layout.dp / loader.global_batch
        if self.pipeline is not None:
            weighted_loss, data_wait_s = self._pipeline_micro_batches(loader, step, device)
        else:
            weighted_loss, data_wait_s = self._micro_batches(loader, step, device, autocast, weight)
        for reduction in self.reductions:
            reduction.apply()
        if grad_clip is not None:
            clip_grad_norm(
                list(self.module.parameters()),
                grad_clip,
                device,
                stage_group=self.mesh.pp_group if self.mesh else None,
                expert_params=self.expert_params,
                expert_group=self.mesh.ep_group if self.mesh else None,
            )
        update_wait_s = before_update()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        return self._global_loss(weighted_loss / self.layout.dp, device), data_wait_s, update_wait_s

    def _micro_batches(
        self, loader: BatchLoader, step: int, device: torch.device, autocast: torch.autocast, weight: float
    ) -> tuple[float, float]:
        weighted_loss, data_wait_s = 0.0, 0.0
        for moe in self.module.modules():
            if isinstance(moe, MoE):
                moe.balance_loss_scale = weight
        batches = loader.micro_batches(step - 1)
        for micro in range(loader.accumulation_steps):
            fetch_start = time.perf_counter()
            inputs, targets = next(batches)
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            inputs, targets = self.context_slice(inputs, targets)
            compute_start = time.perf_counter()
            data_wait_s += compute_start - fetch_start
            with gradient_sync(self.module, micro == loader.accumulation_steps - 1), autocast:
                loss = language_model_loss(self.module(inputs), targets)
                (loss * weight).backward()
            weighted_loss += loss.item() * weight
            self._emulate_slowdown(compute_start)
        return weighted_loss, data_wait_s

    def _pipeline_micro_batches(
        self, loader: BatchLoader, step: int, device: torch.device
    ) -> tuple[float, float]:
        assert self.pipeline is not None
        fetch_start = time.perf_counter()
        parts = list(loader.micro_batches(step - 1))
        inputs = torch.cat([i for i, _ in parts]).to(device)
        targets = torch.cat([t for _, t in parts]).to(device)
        compute_start = time.perf_counter()
        losses: list[torch.Tensor] = []
        self.pipeline.schedule.step(inputs, target=targets, losses=losses)
        self._emulate_slowdown(compute_start)
        if not self.pipeline.has_last_stage:
            return 0.0, compute_start - fetch_start
        mean = torch.stack([loss.detach() for loss in losses]).mean().item()
        return mean * loader.per_rank * self.layout.dp / loader.global_batch, compute_start - fetch_start

    def _emulate_slowdown(self, since: float) -> None:
        if self.slowdown > 1:
            time.sleep((self.slowdown - 1) * (time.perf_counter() - since))

    def _global_loss(self, rank_loss: float, device: torch.device) -> float:
        """Σ over data × context ranks of each one's weighted share; tensor ranks hold copies."""
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return rank_loss
        value = torch.tensor([rank_loss if self.holds_loss else 0.0], dtype=torch.float64, device=device)
        dist.all_reduce(value)
        return float(value) / (self.layout.cp * self.layout.tp)


def gradient_sync(model: nn.Module, enabled: bool) -> AbstractContextManager[object]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
        return nullcontext()
    if isinstance(model, DistributedDataParallel) and not enabled:
        return model.no_sync()
    return nullcontext()


def build(
    spec: ModelSpec,
    layout: Layout,
    device: torch.device,
    seed: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    recompute: bool = False,
    moe: MoEOptions | None = None,
    options: ParallelOptions | None = None,
    micro_batches: int = 1,
    seq_len: int = 1,
) -> ParallelModel:
    """The decoder, identically initialised on every rank, laid out as `layout` says."""
    options = options or ParallelOptions()
    torch.manual_seed(seed)
    model = Decoder(spec, recompute=recompute, moe=moe).to(device)
    slowdown = options.emulated_slowdown[rank] if options.emulated_slowdown else 1.0
    if world_size == 1:
        return ParallelModel(model, layout, slowdown=slowdown)
    # an emulated slowdown must stretch compute only, so gradients are reduced after the backward
    # pass (on the N-D path) instead of inside it (DDP)
    plain = options.dp_replicate == 1 and options.emulated_slowdown is None
    if layout.tp == layout.pp == layout.cp == layout.ep == 1 and plain:
        if layout.zero_stage == 3:
            for block in model.layers.values():
                fully_shard(block)
            fully_shard(model)
            wrapped: nn.Module = model
        else:
            wrapped = DistributedDataParallel(
                model, device_ids=None if device.type == "cpu" else [device.index]
            )
        return ParallelModel(wrapped, layout, dp_rank=rank, slowdown=slowdown)
    return _build_nd(model, layout, device, options, micro_batches, seq_len, slowdown)


def _build_nd(
    model: Decoder,
    layout: Layout,
    device: torch.device,
    options: ParallelOptions,
    micro_batches: int,
    seq_len: int,
    slowdown: float,
) -> ParallelModel:
    mesh = build_mesh(layout, device.type, options.dp_replicate)
    expert_params = shard_experts(model, mesh.ep_group) if mesh.ep_group is not None else []
    if mesh.cp_group is not None:
        for module in model.modules():
            if isinstance(module, Attention):
                module.core = RingCausalAttention(mesh.cp_group)
    if layout.pp > 1:
        spans = stage_layers(model.spec, layout, seq_len)
        last = len(spans) - 1
        mine = range(mesh.coords.pp, len(spans), layout.pp)
        parts = [prune(model, spans[s], s == 0, s == last) for s in mine]
    else:
        parts = [model]
    for part in parts:
        if layout.tp > 1:
            parallelize_decoder(part, mesh.tp_mesh, layout.sequence_parallel)
        if layout.zero_stage == 3:
            for block in part.layers.values():
                fully_shard(block, mesh=mesh.fsdp_mesh)
            fully_shard(part, mesh=mesh.fsdp_mesh)
    module = union(model, parts) if layout.pp > 1 else model
    reductions = []
    if layout.zero_stage < 3 and layout.dp * layout.cp > 1:
        experts = {id(p) for p in expert_params}
        dense = [p for p in module.parameters() if id(p) not in experts]
        reductions.append(Reduction(dense, mesh.dp_cp_group, layout.dp * layout.cp))
    if expert_params:
        reductions.append(Reduction(expert_params, mesh.expert_replica_group, layout.dp * layout.cp))
    pipeline = None
    if layout.pp > 1:
        for part in parts:  # the schedule scales every gradient by 1 / micro-batches already
            for moe in part.modules():
                if isinstance(moe, MoE):
                    moe.balance_loss_scale = 1.0
        pipeline = build_pipeline(
            list(zip(mine, parts, strict=True)),
            layout,
            micro_batches,
            language_model_loss,  # type: ignore[arg-type]
            device,
            mesh.pp_group,
        )
    return ParallelModel(
        module,
        layout,
        dp_rank=mesh.coords.dp,
        mesh=mesh,
        pipeline=pipeline,
        reductions=reductions,
        expert_params=expert_params,
        slowdown=slowdown,
    )
