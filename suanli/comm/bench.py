"""Time our hierarchical collectives against the backend's built-ins on the same process group,
in the format of nccl-tests (size, count, time, algbw, busbw).

`run_bench` runs inside an initialised process group (every rank calls it); `bench` starts
`procs` local processes with gloo (CPU) and returns rank 0's rows.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from suanli.comm.collectives import (
    NodeLayout,
    hierarchical_all_gather,
    hierarchical_all_reduce,
    hierarchical_all_to_all,
    hierarchical_reduce_scatter,
    node_layout,
)
from suanli.comm.select import BENCH_COLLECTIVES, busbw_factor
from suanli.spec.errors import SpecError

ELEMENT_BYTES = 4  # float32, as nccl-tests' default


def _buffers(collective: str, size_bytes: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) for one call; sizes follow nccl-tests (all-gather: output size)."""
    count = max(world, size_bytes // ELEMENT_BYTES // world * world)
    full = torch.ones(count)
    if collective == "all_reduce":
        return full, full
    if collective == "all_gather":
        return torch.ones(count // world), full
    if collective == "reduce_scatter":
        return full, torch.empty(count // world)
    return full, torch.empty(count)


def _calls(collective: str, layout: NodeLayout) -> tuple[Callable, Callable]:
    """(ours, built-in) for one collective: each takes (input, output)."""
    if collective == "all_reduce":
        return (lambda i, o: hierarchical_all_reduce(i, layout)), (lambda i, o: dist.all_reduce(i))
    if collective == "all_gather":
        return (lambda i, o: hierarchical_all_gather(o, i, layout)), (
            lambda i, o: dist.all_gather_single(o, i)
        )
    if collective == "reduce_scatter":
        return (
            (lambda i, o: hierarchical_reduce_scatter(o, i, layout)),
            (lambda i, o: dist.reduce_scatter_single(o, i)),
        )
    return (lambda i, o: hierarchical_all_to_all(o, i, layout)), (lambda i, o: dist.all_to_all_single(o, i))


def _time_us(call: Callable, tensors: tuple[torch.Tensor, torch.Tensor], iters: int, warmup: int) -> float:
    for _ in range(warmup):
        call(*tensors)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        call(*tensors)
    elapsed = torch.tensor([(time.perf_counter() - start) / iters * 1e6])
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    return float(elapsed)


def run_bench(
    collectives: list[str], sizes: list[int], ranks_per_node: int, iters: int = 5, warmup: int = 1
) -> list[dict]:
    """Every rank calls this; all get the same rows."""
    layout = node_layout(ranks_per_node)
    world = layout.world_size
    rows = []
    for collective in collectives:
        ours, builtin = _calls(collective, layout)
        for size in sizes:
            tensors = _buffers(collective, size, world)
            size_bytes = max(t.numel() for t in tensors) * ELEMENT_BYTES
            row: dict = {
                "collective": collective,
                "size_bytes": size_bytes,
                "count": size_bytes // ELEMENT_BYTES,
            }
            for name, call in (("ours", ours), ("builtin", builtin)):
                time_us = _time_us(call, tensors, iters, warmup)
                algbw = size_bytes / time_us / 1e3
                row[name] = {
                    "time_us": round(time_us, 1),
                    "algbw_gb_s": round(algbw, 6),
                    "busbw_gb_s": round(algbw * busbw_factor(collective, world), 6),
                }
            rows.append(row)
    return rows


def _worker(rank: int, world: int, store: str, out: str, args: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        rows = run_bench(**args)
        if rank == 0:
            Path(out).write_text(json.dumps(rows), encoding="utf-8")
    finally:
        dist.destroy_process_group()


def bench(
    procs: int,
    ranks_per_node: int,
    collectives: list[str],
    sizes: list[int],
    iters: int = 5,
    warmup: int = 1,
) -> list[dict]:
    """Start `procs` local gloo processes, grouped `ranks_per_node` to an emulated node."""
    unknown = [c for c in collectives if c not in BENCH_COLLECTIVES]
    if unknown:
        raise SpecError(f"collective: unknown {unknown[0]!r}, expected one of {', '.join(BENCH_COLLECTIVES)}")
    if procs < 2 or ranks_per_node < 1 or procs % ranks_per_node:
        raise SpecError(f"procs: {procs} must be >= 2 and a multiple of ranks_per_node ({ranks_per_node})")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rows.json"
        args = {
            "collectives": collectives,
            "sizes": sizes,
            "ranks_per_node": ranks_per_node,
            "iters": iters,
            "warmup": warmup,
        }
        mp.start_processes(
            _worker,
            args=(procs, str(Path(folder) / "store"), str(out), args),
            nprocs=procs,
            join=True,
            start_method="fork",
        )
        return json.loads(out.read_text(encoding="utf-8"))
