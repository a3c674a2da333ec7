"""Checkpoint engine benchmark: blocking time, persist throughput, recovery time and memory over saves.

All measurements use one sharded state (DTensors over a 4-rank gloo mesh, like FSDP) of
--total-gb, emulating 2 nodes x 2 ranks with one checkpoint agent per node:

- blocking time of one save for torch.save (each rank its shard), DCP save, DCP async_save and ours;
- our persist throughput (save start until the checkpoint is committed on disk) against the disk's
  own sequential write rate, measured in the same run the same way (each rank writes its share in
  16 MiB chunks, then fsync);
- time to restore from the agents' memory and from disk;
- resident memory of each rank over --rss-saves consecutive saves (memory tiers only).

    python benchmarks/checkpoint.py                  # 2 GB state, prints a table
    python benchmarks/checkpoint.py --quick --json   # 128 MB state, under a minute, prints JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CHUNK_BYTES = 16 << 20
TENSOR_BYTES = 32 << 20
RANKS_PER_NODE = 2


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _worker(out: Path, total_bytes: int, saves: int, rss_saves: int, agent_dir: Path) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    from suanli.ft.checkpoint.engine import CheckpointEngine

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    async_group = dist.new_group(backend="gloo")  # async_save's collectives run beside the main thread's
    local_bytes = total_bytes // world
    count = max(1, local_bytes // TENSOR_BYTES)
    elements = local_bytes // count // 4

    def sharded(value: float) -> DTensor:
        return DTensor.from_local(
            torch.full((elements,), value, dtype=torch.float32), mesh, [Shard(0)], run_check=False
        )

    state = {
        "model": {f"layers.{i}.weight": sharded(i) for i in range(count // 3 or 1)},
        "optimizer": {f"layers.{i}.exp_avg": sharded(-i) for i in range(count - (count // 3 or 1))},
    }
    state_bytes = sum(t.to_local().nbytes for part in state.values() for t in part.values())
    folder = out / "data"
    results: dict[str, float] = {}

    def timed(action) -> float:
        dist.barrier()
        start = time.perf_counter()
        action()
        elapsed = time.perf_counter() - start
        dist.barrier()
        return elapsed

    def slowest(value: float) -> float:
        gathered = [0.0] * world
        dist.all_gather_object(gathered, value)
        return max(gathered)

    # The disk's own sequential write rate, all ranks at once, each writing its share then fsync.
    chunk = os.urandom(CHUNK_BYTES)
    folder.mkdir(parents=True, exist_ok=True)

    def write_sequential() -> None:
        with open(folder / f"sequential-{rank}.bin", "wb") as handle:
            for _ in range(state_bytes // CHUNK_BYTES):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())

    results["disk_write_gb_s"] = (
        world * (state_bytes // CHUNK_BYTES) * CHUNK_BYTES / slowest(timed(write_sequential)) / 1e9
    )
    (folder / f"sequential-{rank}.bin").unlink()

    local = {key: t.to_local() for part in state.values() for key, t in part.items()}
    torch_save, torch_save_fsync, dcp_save, dcp_async = [], [], [], []
    for repeat in range(2):
        path = folder / f"torch-save-{rank}-{repeat}.pt"
        torch_save.append(slowest(timed(lambda path=path: torch.save(local, path))))

        def fsync_file(path=path) -> None:
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())

        torch_save_fsync.append(torch_save[-1] + slowest(timed(fsync_file)))
        path.unlink()
        dcp_save.append(slowest(timed(lambda r=repeat: dcp.save(state, checkpoint_id=folder / f"dcp-{r}"))))
        pending = []

        def start_async_save(r=repeat, pending=pending) -> None:
            pending.append(
                dcp.async_save(state, checkpoint_id=folder / f"async-{r}", process_group=async_group)
            )

        dcp_async.append(slowest(timed(start_async_save)))
        pending[0].result()
        dist.barrier()
        if rank == 0:
            for name in (f"dcp-{repeat}", f"async-{repeat}"):
                shutil.rmtree(folder / name)
    results["torch_save_s"] = statistics.mean(torch_save)
    results["torch_save_fsync_s"] = statistics.mean(torch_save_fsync)
    results["dcp_save_s"] = statistics.mean(dcp_save)
    results["dcp_async_save_s"] = statistics.mean(dcp_async)

    node = rank // RANKS_PER_NODE
    nodes = world // RANKS_PER_NODE
    engine = CheckpointEngine(
        folder / "ours", rank, world, node_id=node, nodes=nodes, agent_dir=agent_dir, keep_last=2
    )
    blocking, persist = [], []
    for step in range(1, saves + 1):
        dist.barrier()
        start = time.perf_counter()
        engine.save(step, state)
        blocking.append(slowest(time.perf_counter() - start))
        engine.wait()
        persist.append(slowest(time.perf_counter() - start))
    results["ours_first_save_s"] = blocking[0]
    results["ours_save_s"] = statistics.mean(
        blocking[2:] or blocking
    )  # both memory slots warm after two saves
    results["ours_persist_s"] = statistics.mean(persist[2:] or persist)
    results["ours_persist_gb_s"] = world * state_bytes / results["ours_persist_s"] / 1e9

    def scramble() -> None:
        for part in state.values():
            for tensor in part.values():
                tensor.to_local().fill_(7.0)

    scramble()
    restored = []
    results["recovery_from_memory_s"] = slowest(timed(lambda: restored.append(engine.load(state))))
    memory_tier = engine.restored.tier
    intact = bool((state["model"]["layers.0.weight"].to_local() == 0).all())
    engine.close()
    # The same restore with the two nodes' roles swapped: each rank's snapshot now comes from the
    # replica its node placed on the *other* node's agent (what happens when a node is lost).
    scramble()
    peer_engine = CheckpointEngine(
        folder / "ours", rank, world, node_id=(node + 1) % nodes, nodes=nodes, agent_dir=agent_dir
    )
    results["recovery_from_peer_memory_s"] = slowest(timed(lambda: peer_engine.load(state)))
    peer_node = int(peer_engine.restored.where.rsplit(" ", 1)[1])
    intact = intact and peer_node != node and bool((state["model"]["layers.0.weight"].to_local() == 0).all())
    peer_engine.close()
    scramble()
    disk_engine = CheckpointEngine(folder / "ours", rank, world, node_id=node, nodes=nodes)
    results["recovery_from_disk_s"] = slowest(timed(lambda: restored.append(disk_engine.load(state))))
    disk_engine.close()
    results["steps_lost"] = saves - restored[0]

    memory_engine = CheckpointEngine(
        folder / "memory-only", rank, world, node_id=node, nodes=nodes, agent_dir=agent_dir, disk_every=10**9
    )
    rss = []
    for step in range(1, rss_saves + 1):
        memory_engine.save(step, state)
        memory_engine.wait()
        rss.append(_rss_bytes())
    memory_engine.close()
    settled = min(10, len(rss) - 1)
    growth = [(rss[-1] - rss[settled]) / 2**20]
    results["rss_growth_mb"] = slowest(growth[0])
    results["rss_mb"] = slowest(rss[-1] / 2**20)
    if rank == 0:
        results.update(
            state_gb=world * state_bytes / 1e9,
            ranks=world,
            saves=saves,
            rss_saves=rss_saves,
            restored_tier=memory_tier,
            restored_intact=intact,
        )
        (out / "results.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _machine() -> str:
    cores = os.cpu_count()
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{platform.machine()}, {cores} cores, {memory_gb:.0f} GiB RAM, {system}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 MB state, for a run under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--total-gb", type=float, default=None)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--saves", type=int, default=4)
    parser.add_argument("--rss-saves", type=int, default=100)
    parser.add_argument(
        "--folder", type=Path, default=None, help="where checkpoints go (default: a temp dir)"
    )
    args = parser.parse_args()
    total_gb = args.total_gb if args.total_gb is not None else (0.128 if args.quick else 2.0)

    from suanli.ft.checkpoint.agent import start_agent
    from suanli.ft.checkpoint.launcher import launch

    out = Path(tempfile.mkdtemp(prefix="suanli-ckpt-bench-", dir=args.folder))
    agent_dir = out / "agents"
    agents = [start_agent(node, agent_dir) for node in range(args.ranks // RANKS_PER_NODE)]
    try:
        worker_args = [
            str(out),
            str(int(total_gb * 1e9)),
            str(args.saves),
            str(args.rss_saves),
            str(agent_dir),
        ]
        code = launch(__file__, ["--worker", *worker_args], args.ranks)
        if code != 0:
            sys.exit(f"error: benchmark workers failed with exit code {code}")
        results = json.loads((out / "results.json").read_text())
    finally:
        for agent in agents:
            agent.terminate()
            agent.wait(timeout=60)
        shutil.rmtree(out, ignore_errors=True)
    summary = {
        "stall_ratio_vs_torch_save": results["ours_save_s"] / results["torch_save_s"],
        "persist_ratio_vs_disk": results["ours_persist_gb_s"] / results["disk_write_gb_s"],
        "recovery_from_memory_s": results["recovery_from_memory_s"],
        "rss_growth_mb": results["rss_growth_mb"],
        **results,
        "machine": _machine(),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    for key, value in summary.items():
        print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6]))
    else:
        main()
