"""The hierarchical collectives, executed with 4 and 8 gloo processes on CPU, against the built-ins.

Integers and float64 tensors with integer values reduce exactly in any order, so the results must be
bit-identical; random float32 / bf16 differ only by summation order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from suanli.comm.collectives import (
    Communicator,
    hierarchical_all_gather,
    hierarchical_all_reduce,
    hierarchical_all_to_all,
    hierarchical_reduce_scatter,
    node_layout,
)

TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 5e-2)}


def _inputs(dtype: torch.dtype, numel: int, rank: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234 + rank)
    if dtype in (torch.int64, torch.int32, torch.float64):
        return torch.randint(-1000, 1000, (numel,), generator=generator).to(dtype)
    return torch.randn(numel, generator=generator).to(dtype)


def _same(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    if actual.dtype in TOLERANCE:
        rtol, atol = TOLERANCE[actual.dtype]
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=what)
    elif not torch.equal(actual, expected):
        raise AssertionError(f"{what}: {actual} != {expected}")


def _check_all(rank: int, world: int, ranks_per_node: int) -> None:
    layout = node_layout(ranks_per_node)
    assert layout.nodes == world // ranks_per_node
    comm = Communicator(layout)
    for dtype in (torch.int64, torch.float64, torch.float32, torch.bfloat16):
        label = f"{dtype} world={world} ranks_per_node={ranks_per_node}"
        # all-reduce of a 3x5 tensor (15 elements: not a multiple of ranks_per_node)
        x = _inputs(dtype, 15, rank).view(3, 5)
        expected = x.clone()
        dist.all_reduce(expected)
        ours = x.clone()
        hierarchical_all_reduce(ours, layout)
        _same(ours, expected, f"all_reduce {label}")
        ours = x.clone()
        comm.all_reduce(ours)
        _same(ours, expected, f"Communicator.all_reduce {label}")

        block = _inputs(dtype, 3, rank)
        expected = torch.empty(world * 3, dtype=dtype)
        dist.all_gather_single(expected, block)
        ours = torch.empty_like(expected)
        hierarchical_all_gather(ours, block, layout)
        _same(ours, expected, f"all_gather {label}")

        full = _inputs(dtype, world * 3, rank)
        expected = torch.empty(3, dtype=dtype)
        dist.reduce_scatter_single(expected, full)
        ours = torch.empty_like(expected)
        hierarchical_reduce_scatter(ours, full, layout)
        _same(ours, expected, f"reduce_scatter {label}")

        expected = torch.empty_like(full)
        dist.all_to_all_single(expected, full)
        ours = torch.empty_like(full)
        hierarchical_all_to_all(ours, full, layout)
        _same(ours, expected, f"all_to_all {label}")
        ours = torch.empty_like(full)
        comm.all_to_all(ours, full)
        _same(ours, expected, f"Communicator.all_to_all {label}")


def _worker(rank: int, world: int, store_path: str, layouts: list[int]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        for ranks_per_node in layouts:
            _check_all(rank, world, ranks_per_node)
    finally:
        dist.destroy_process_group()


def _spawn(world: int, layouts: list[int], tmp_path) -> None:  # type: ignore[no-untyped-def]
    mp.start_processes(
        _worker, args=(world, str(tmp_path / "store"), layouts), nprocs=world, join=True, start_method="fork"
    )


def test_hierarchical_collectives_match_builtins_4_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _spawn(4, [2, 1, 4], tmp_path)


def test_hierarchical_collectives_match_builtins_8_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _spawn(8, [4, 2], tmp_path)
