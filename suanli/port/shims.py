"""Portable stand-ins that `suanli port` writes into a script where the target lacks a CUDA call.

Each one does the device's own thing when the process has an accelerator and the CPU's answer
otherwise; the port report says, per call, what differs from CUDA. Imported by ported scripts only.
"""

from __future__ import annotations

import platform
import resource
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


def _accelerator() -> torch.device | None:
    return torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None


def _rss_bytes() -> int:
    """Resident set size from /proc (Linux); the peak where /proc is absent."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return max_memory_allocated()


class Event:
    """torch.cuda.Event for a device without timing events: wall-clock time taken at `record()`
    after a synchronize, so `elapsed_time` measures the same span as CUDA's events (milliseconds)."""

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ) -> None:
        self.enable_timing = enable_timing
        self._at_s: float | None = None

    def record(self, stream: Any = None) -> None:
        if _accelerator() is not None:
            torch.accelerator.synchronize()
        self._at_s = time.perf_counter()

    def elapsed_time(self, end_event: Event) -> float:
        if not self.enable_timing or not end_event.enable_timing:
            raise RuntimeError("both events need enable_timing=True")
        if self._at_s is None or end_event._at_s is None:
            raise RuntimeError("both events must be recorded before elapsed_time")
        return (end_event._at_s - self._at_s) * 1000.0

    def synchronize(self) -> None:
        """Recording already waited for the device."""

    def query(self) -> bool:
        return True

    def wait(self, stream: Any = None) -> None:
        """Work is already ordered: recording synchronized the device."""


def current_device() -> int:
    accelerator = _accelerator()
    return torch.accelerator.current_device_index() if accelerator is not None else 0


def device(index: Any) -> AbstractContextManager[Any]:
    """torch.cuda.device(i): the accelerator's device context; on CPU, one device and nothing to select."""
    accelerator = _accelerator()
    if accelerator is not None:
        return torch.get_device_module(accelerator.type).device(index)
    return nullcontext()


def manual_seed(seed: int) -> None:
    """Seed the accelerator's generator; on CPU there is none besides the one torch.manual_seed seeds."""
    accelerator = _accelerator()
    if accelerator is not None:
        torch.get_device_module(accelerator.type).manual_seed_all(seed)


def empty_cache() -> None:
    if _accelerator() is not None:
        torch.accelerator.empty_cache()


def memory_allocated(device: Any = None) -> int:
    """Bytes the device's allocator holds; on CPU, the process's resident memory."""
    return torch.accelerator.memory_allocated(device) if _accelerator() is not None else _rss_bytes()


def max_memory_allocated(device: Any = None) -> int:
    """Peak bytes of the device's allocator; on CPU, the process's peak resident memory."""
    if _accelerator() is not None:
        return torch.accelerator.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def reset_peak_memory_stats(device: Any = None) -> None:
    if _accelerator() is not None:
        torch.accelerator.reset_peak_memory_stats(device)


def get_device_name(device: Any = None) -> str:
    accelerator = _accelerator()
    if accelerator is not None:
        return torch.get_device_module(accelerator.type).get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """PyTorch computes bfloat16 on every CPU; an accelerator answers for itself."""
    accelerator = _accelerator()
    if accelerator is not None:
        return bool(torch.get_device_module(accelerator.type).is_bf16_supported())
    return True


def make_graphed_callables(callables: Any, sample_args: Any, *args: Any, **kwargs: Any) -> Any:
    """No graph capture here: the callables run eagerly, with the same results."""
    return callables


__all__ = [
    "Event",
    "current_device",
    "device",
    "empty_cache",
    "get_device_name",
    "is_bf16_supported",
    "make_graphed_callables",
    "manual_seed",
    "max_memory_allocated",
    "memory_allocated",
    "reset_peak_memory_stats",
]
