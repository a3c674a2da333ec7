"""Expert parallelism (GShard, Lepikhin et al. 2020): the experts of every MoE layer are split over
the EP group; each rank routes its own tokens, sends every (token, expert) assignment to the rank
holding that expert with an all-to-all, runs its experts and sends the outputs back the same way.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as functional
from torch import nn

from suanli.runtime.model import Decoder, MoE


class AllToAllDispatch:
    """An `ExpertDispatch` over `group`: rank r holds experts [r·local, (r+1)·local)."""

    def __init__(self, group: dist.ProcessGroup, experts: int) -> None:
        self.group, self.size = group, dist.get_world_size(group)
        self.experts, self.local = experts, experts // self.size

    def __call__(
        self, tokens: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor, experts: nn.ModuleDict
    ) -> torch.Tensor:
        top_k = chosen.shape[1]
        flat = chosen.flatten()
        valid = (flat >= 0).nonzero().squeeze(1)  # assignments not dropped for capacity
        order = valid[flat[valid].argsort(stable=True)]  # by expert, so by destination rank
        token_rows, expert_ids = order // top_k, flat[order]
        sent_counts = torch.bincount(expert_ids, minlength=self.experts)
        received_counts = torch.empty_like(sent_counts)
        dist.all_to_all_single(received_counts, sent_counts, group=self.group)
        send_splits = sent_counts.view(self.size, self.local).sum(dim=1).tolist()
        receive_splits = received_counts.view(self.size, self.local).sum(dim=1).tolist()
        # PyTorch's differentiable all-to-all (the one torch.distributed.nn points to)
        received = functional.all_to_all_single_autograd(
            tokens[token_rows], receive_splits, send_splits, self.group
        )
        # rows arrive by source rank, then by this rank's expert
        local_ids = torch.arange(self.local, device=tokens.device).repeat(self.size)
        row_expert = local_ids.repeat_interleave(received_counts)
        first = dist.get_rank(self.group) * self.local
        outputs = torch.zeros_like(received)
        for local in range(self.local):
            rows = (row_expert == local).nonzero().squeeze(1)
            if rows.numel():
                outputs = outputs.index_copy(0, rows, experts[str(first + local)](received[rows]))
        returned = functional.all_to_all_single_autograd(outputs, send_splits, receive_splits, self.group)
        weight = weights.flatten()[order].unsqueeze(1)
        return torch.zeros_like(tokens).index_add(0, token_rows, returned * weight)


def shard_experts(model: Decoder, group: dist.ProcessGroup) -> list[nn.Parameter]:
    """Keep this rank's experts in every MoE layer and route through the all-to-all; returns the
    expert parameters (their gradients are reduced over expert replicas only)."""
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    expert_params: list[nn.Parameter] = []
    for module in model.modules():
        if not isinstance(module, MoE):
            continue
        local = module.n_experts // size
        keep = {str(i) for i in range(rank * local, (rank + 1) * local)}
        for key in list(module.experts.keys()):
            if key not in keep:
                del module.experts[key]
        module.dispatch = AllToAllDispatch(group, module.n_experts)
        expert_params += list(module.experts.parameters())
    return expert_params
