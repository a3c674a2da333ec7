"""Context parallelism: each rank of the CP group holds a contiguous slice of every sequence, and
attention runs as a ring (Liu et al. 2023, "Ring Attention with Blockwise Transformers"): keys and
values travel round the ring, each rank folds every block into its queries' output with the online
softmax of FlashAttention (Dao et al. 2022), skipping blocks that lie wholly in its future.

PyTorch 2.13's own `context_parallel` has no CPU kernel strategy (SDPA's CPU flash kernel cannot be
sharded), so the ring is written out here: plain tensor ops and point-to-point sends, any backend.
The backward pass goes round the ring again, carrying each block's key/value gradients home.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def _block(q: torch.Tensor, k: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
    scores = (q @ k.transpose(-1, -2)).float() * scale
    if causal:
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return scores


def _rotate(tensors: list[torch.Tensor], group: dist.ProcessGroup) -> list[torch.Tensor]:
    """Send each tensor to the next rank of the ring, receive the previous rank's."""
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    to = dist.get_global_rank(group, (rank + 1) % size)
    source = dist.get_global_rank(group, (rank - 1) % size)
    received = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t.contiguous(), to, group) for t in tensors]
    ops += [dist.P2POp(dist.irecv, r, source, group) for r in received]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return received


class RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: dist.ProcessGroup):
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        scale = 1 / math.sqrt(q.shape[-1])
        out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
        lse = torch.full(q.shape[:-1], float("-inf"), dtype=torch.float32, device=q.device)
        k_block, v_block = k, v
        for hop in range(size):
            owner = (rank - hop) % size  # whose slice of the sequence k_block is
            if owner <= rank:
                scores = _block(q, k_block, owner == rank, scale)
                block_lse = scores.logsumexp(dim=-1)
                new_lse = torch.logaddexp(lse, block_lse)
                out = out * (lse - new_lse).exp().unsqueeze(-1) + (scores - new_lse.unsqueeze(-1)).exp() @ (
                    v_block.float()
                )
                lse = new_lse
            if hop < size - 1:
                k_block, v_block = _rotate([k_block, v_block], group)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.scale = group, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        group, scale = ctx.group, ctx.scale
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        grad_out = grad_out.float()
        delta = (grad_out * out.float()).sum(dim=-1, keepdim=True)  # FlashAttention-2's D = rowsum(dO ∘ O)
        grad_q = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
        k_block, v_block = k, v
        grad_k, grad_v = torch.zeros_like(k, dtype=torch.float32), torch.zeros_like(v, dtype=torch.float32)
        for hop in range(size):
            owner = (rank - hop) % size
            if owner <= rank:
                probs = (_block(q, k_block, owner == rank, scale) - lse.unsqueeze(-1)).exp()
                grad_v += probs.transpose(-1, -2) @ grad_out
                grad_scores = probs * (grad_out @ v_block.float().transpose(-1, -2) - delta)
                grad_q += grad_scores @ k_block.float() * scale
                grad_k += grad_scores.transpose(-1, -2) @ q.float() * scale
            # every hop, the key/value gradients follow their block; after `size` hops they are home
            k_block, v_block, grad_k, grad_v = _rotate([k_block, v_block, grad_k, grad_v], group)
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None


class RingCausalAttention:
    """An `Attention.core` for context parallelism over `group` (grouped K/V heads are expanded)."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        return RingAttention.apply(q, k, v, self.group)
