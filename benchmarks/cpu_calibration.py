"""Measure this machine's CPU as the runtime uses it: one core per process (torchrun sets
OMP_NUM_THREADS=1), so one "accelerator" is one core.

    .venv/bin/python benchmarks/cpu_calibration.py [--json]

- GEMM peak: best of repeated square matmuls (fp32 and bf16) on one thread, 2·n³ FLOPs each;
- memory bandwidth: a 256 MiB tensor copy on one thread (read + write bytes / time), as STREAM's copy;
- gloo bandwidth: two processes on this machine; one-way send/recv of 64 MiB, and an all-reduce of
  64 MiB reported as bus bandwidth 2(n-1)/n · bytes / time (the nccl-tests convention), and the
  time of a one-float all-reduce (latency: best, and median of 200 under the machine's load).

The figures go into the `cpu-1core` entry of suanli/catalog/accelerators.yaml with the load
(`uptime`) they were taken under: on a shared machine they are a floor, not a datasheet.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

GLOO_BYTES = 64 * 2**20


def best_seconds(action: Callable[[], object], repeats: int) -> float:
    action()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_tflops(dtype: torch.dtype, n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e12


def copy_gb_s(size_bytes: int = 256 * 2**20, repeats: int = 5) -> float:
    source = torch.empty(size_bytes // 4, dtype=torch.float32).fill_(1.0)
    target = torch.empty_like(source)
    return 2 * size_bytes / best_seconds(lambda: target.copy_(source), repeats) / 1e9


def _gloo_worker(rank: int, port: int, results: dict[str, float]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    tensor = torch.ones(GLOO_BYTES // 4)

    def send_receive() -> None:
        if rank == 0:
            dist.send(tensor, 1)
        else:
            dist.recv(tensor, 0)
        dist.barrier()

    p2p_s = best_seconds(send_receive, 5)
    all_reduce_s = best_seconds(lambda: dist.all_reduce(tensor), 5)
    small = torch.ones(1)
    latency_s = best_seconds(lambda: dist.all_reduce(small), 50)
    latencies = []
    for _ in range(200):
        start = time.perf_counter()
        dist.all_reduce(small)
        latencies.append(time.perf_counter() - start)
    if rank == 0:
        results["gloo_small_allreduce_us"] = latency_s * 1e6
        # the median, not the best: what a collective costs while other processes hold the cores
        results["gloo_small_allreduce_median_us"] = statistics.median(latencies) * 1e6
        results["gloo_p2p_gb_s"] = GLOO_BYTES / p2p_s / 1e9
        results["gloo_allreduce_bus_gb_s"] = 2 * (2 - 1) / 2 * GLOO_BYTES / all_reduce_s / 1e9
    dist.destroy_process_group()


def gloo_bandwidth() -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_gloo_worker, args=(port, results), nprocs=2)
        return dict(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures = {
        "fp32_gemm_tflops": gemm_tflops(torch.float32),
        "bf16_gemm_tflops": gemm_tflops(torch.bfloat16),
        "copy_gb_s": copy_gb_s(),
        **gloo_bandwidth(),
        "load_average_1min": os.getloadavg()[0],
        "cores": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name:26s} {value:.4g}")


if __name__ == "__main__":
    main()
