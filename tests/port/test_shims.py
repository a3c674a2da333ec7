"""The shims stand in for CUDA calls on a CPU: what they return is what the port report says."""

from __future__ import annotations

import time

import pytest
import torch

from suanli.port import shims


def test_event_times_wall_clock_in_milliseconds() -> None:
    start, end = shims.Event(enable_timing=True), shims.Event(enable_timing=True)
    start.record()
    time.sleep(0.02)
    end.record()
    end.synchronize()
    assert 15 <= start.elapsed_time(end) < 1000
    with pytest.raises(RuntimeError, match="enable_timing"):
        shims.Event().elapsed_time(end)


def test_seeding_a_missing_device_generator_leaves_the_cpu_stream_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    shims.manual_seed(99)
    assert torch.equal(torch.rand(3), expected)


def test_memory_figures_are_the_process_resident_memory() -> None:
    peak, now = shims.max_memory_allocated(), shims.memory_allocated()
    assert 0 < now <= peak * 1.01  # peak RSS counts in KiB pages; the current one may round up


def test_graphs_and_device_contexts_run_eagerly() -> None:
    layer = torch.nn.Linear(2, 2)
    assert shims.make_graphed_callables(layer, (torch.zeros(1, 2),)) is layer
    with shims.device(1):
        assert shims.current_device() == 0
    assert shims.is_bf16_supported() and shims.get_device_name()
