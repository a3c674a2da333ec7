"""The runtime's second fence around a sliced job's device memory.

The launcher passes the slice's memory as `SUANLI_SLICE_MEMORY_MB` (`suanli.sched.launch`). Inside
the training process PyTorch's caching allocator is capped at that share of the device
(`torch.cuda.set_per_process_memory_fraction`), and after each step the memory the process holds
(`torch.cuda.max_memory_reserved`) is checked against the slice: a job over its slice stops with a
one-line reason instead of crowding its neighbours (under time-slicing nothing else would stop it;
under MPS and MIG the driver limit stays the first fence).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from suanli.spec.errors import ExecutorError

MIB = 1024**2


class SliceExceeded(ExecutorError):
    """The job holds more device memory than its slice."""


def memory_fraction(slice_bytes: int, device_bytes: int) -> float:
    """The share of the device the allocator may use: the slice, never more than the whole device."""
    return min(1.0, slice_bytes / device_bytes)


@dataclass(frozen=True)
class SliceFence:
    limit_bytes: int
    label: str

    def check(self, used_bytes: int) -> None:
        if used_bytes > self.limit_bytes:
            raise SliceExceeded(
                f"slice exceeded: the job holds {used_bytes / MIB:,.0f} MiB of device memory, over its"
                f" {self.label} slice of {self.limit_bytes / MIB:,.0f} MiB; stopped so its neighbours keep"
                " theirs (ask for a larger slice or a smaller batch)"
            )


def fence_from_env(environ: dict[str, str]) -> SliceFence | None:
    """The fence a sliced job's environment asks for, None for a whole-device job."""
    memory_mb = environ.get("SUANLI_SLICE_MEMORY_MB")
    if not memory_mb:
        return None
    label = environ.get("SUANLI_MIG_PROFILE") or environ.get("SUANLI_SLICE_MODE", "shared")
    return SliceFence(int(memory_mb) * MIB, label)


def apply_fence(device: torch.device, environ: dict[str, str] | None = None) -> SliceFence | None:
    """Cap the caching allocator at the slice on a CUDA device; return the fence to check each step."""
    fence = fence_from_env(dict(os.environ) if environ is None else environ)
    if fence is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(memory_fraction(fence.limit_bytes, total), device)
    return fence


def held_bytes(device: torch.device) -> int:
    """The most device memory this process has held so far (0 off CUDA)."""
    return torch.cuda.max_memory_reserved(device) if device.type == "cuda" else 0
