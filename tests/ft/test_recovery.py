"""End to end: 4 gloo ranks on CPU, 2 per emulated node, under the elastic launcher.

Rank 3 SIGKILLs the agent of its node (the node's memory is gone) and then itself mid-run.
The launcher restarts the job; node 0's ranks restore from their own node's memory, node 1's ranks
from the replicas node 1 placed on node 0 (ring placement). The loss curve must be bit-identical to
an uninterrupted run with the same seed: model, optimizer, LR schedule, data position and RNG
(dropout) all come back exactly.

Run as a script, this file is the training worker the launcher starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

STEPS = 16
KILL_AT = 9
WORLD = 4
RANKS_PER_NODE = 2


def reshard_worker(out: Path) -> None:
    """Save a DTensor sharded over the ranks; the test reloads it on one process."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    from suanli.ft.checkpoint.engine import CheckpointEngine

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    rows = 8 // world
    local = torch.arange(rank * rows * 4, (rank + 1) * rows * 4, dtype=torch.float32).view(rows, 4)
    state = {"model": {"w": DTensor.from_local(local, mesh, [Shard(0)], run_check=False)}, "seen": world}
    engine = CheckpointEngine(out, rank, world)
    engine.save(3, state)
    engine.close()
    dist.destroy_process_group()


def worker() -> None:
    import torch
    import torch.distributed as dist

    from suanli.ft.checkpoint.engine import CheckpointEngine
    from suanli.ft.checkpoint.state import DataPosition, ModelState, OptimizerState, RNGState

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--agent-dir", type=Path)
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--reshard", action="store_true")
    args = parser.parse_args()
    if args.reshard:
        reshard_worker(args.out)
        return

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    torch.manual_seed(1234)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(64, 1)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(64, world, 8, 16, generator=generator)
    targets = inputs.sum(-1, keepdim=True).sin()
    torch.manual_seed(100 + rank)  # each rank's own dropout stream, restored from the checkpoint
    position = DataPosition()
    state = {
        "model": ModelState(model),
        "optimizer": OptimizerState(model, optimizer),
        "lr_scheduler": scheduler,
        "dataloader": position,
        "rng": RNGState(),
    }
    engine = CheckpointEngine(
        args.out / "checkpoints",
        rank,
        world,
        node_id=rank // RANKS_PER_NODE,
        nodes=world // RANKS_PER_NODE,
        agent_dir=args.agent_dir,
        keep_last=2,
        disk_every=4,
    )
    start = engine.load(state) or 0
    restored = engine.restored
    record = {"attempt": attempt, "step": start, "tier": restored.tier if restored else None}
    (args.out / f"restored-rank{rank}-attempt{attempt}.json").write_text(json.dumps(record))
    losses = (args.out / "loss.jsonl").open("a") if rank == 0 else None
    for step in range(start + 1, STEPS + 1):
        batch = position.batch_index % inputs.shape[0]
        loss = torch.nn.functional.mse_loss(model(inputs[batch, rank]), targets[batch, rank])
        optimizer.zero_grad()
        loss.backward()
        for parameter in model.parameters():  # data parallel: average the gradients
            dist.all_reduce(parameter.grad)
            parameter.grad /= world
        optimizer.step()
        scheduler.step()
        position.batch_index += 1
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        if losses is not None:
            losses.write(json.dumps({"step": step, "loss": mean_loss.item() / world}) + "\n")
            losses.flush()
        engine.save(step, state)
        if attempt == 0 and step == args.kill_at and rank == WORLD - 1:
            agent = json.loads((args.agent_dir / "node-1.json").read_text())
            os.kill(agent["pid"], signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
    engine.close()
    dist.destroy_process_group()


def _launch_both(reference: Path, faulty: Path, agent_dir: Path) -> subprocess.CompletedProcess:
    """The uninterrupted and the faulty run, one after the other, from one launcher process."""
    reference_args = ["--out", str(reference)]
    faulty_args = ["--out", str(faulty), "--agent-dir", str(agent_dir), "--kill-at", str(KILL_AT)]
    code = (
        "import sys; from suanli.ft.checkpoint.launcher import launch; "
        f"sys.exit(launch({__file__!r}, {reference_args!r}, {WORLD}) "
        f"or launch({__file__!r}, {faulty_args!r}, {WORLD}, max_restarts=1))"
    )
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=environment
    )


def _loss_curve(out: Path) -> dict[int, float]:
    curve = {}
    for line in (out / "loss.jsonl").read_text().splitlines():
        entry = json.loads(line)
        curve[entry["step"]] = entry["loss"]  # a replayed step overwrites its first record
    return curve


def test_sigkilled_rank_restores_from_peer_memory_with_identical_loss_curve(tmp_path):
    from suanli.ft.checkpoint.agent import shm_folder_for, start_agent

    agent_dir = tmp_path / "agents"
    agents = [start_agent(node, agent_dir) for node in range(WORLD // RANKS_PER_NODE)]
    killed_shm = shm_folder_for(agent_dir, 1)
    try:
        run = _launch_both(tmp_path / "reference", tmp_path / "faulty", agent_dir)
    finally:
        for agent in agents:
            agent.terminate()
            agent.wait(timeout=30)
        if killed_shm is not None:
            subprocess.run(["rm", "-rf", str(killed_shm)], check=False)
    assert run.returncode == 0, run.stderr[-3000:]

    restored = [
        json.loads((tmp_path / "faulty" / f"restored-rank{r}-attempt1.json").read_text())
        for r in range(WORLD)
    ]
    steps = {entry["step"] for entry in restored}
    assert len(steps) == 1, restored
    assert KILL_AT - 1 <= steps.pop() <= KILL_AT  # at most one step lost
    assert [entry["tier"] for entry in restored] == ["memory", "memory", "replica", "replica"]

    expected = _loss_curve(tmp_path / "reference")
    assert sorted(expected) == list(range(1, STEPS + 1))
    assert _loss_curve(tmp_path / "faulty") == expected


def test_checkpoint_of_two_sharded_ranks_loads_on_one_process_and_with_plain_dcp(tmp_path):
    import torch
    import torch.distributed.checkpoint as dcp

    from suanli.ft.checkpoint.engine import CheckpointEngine

    code = (
        "import sys; from suanli.ft.checkpoint.launcher import launch; "
        f"sys.exit(launch({__file__!r}, ['--out', {str(tmp_path / 'ckpt')!r}, '--reshard'], 2))"
    )
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environment
    )
    assert run.returncode == 0, run.stderr[-3000:]

    expected = torch.arange(32, dtype=torch.float32).view(8, 4)
    state = {"model": {"w": torch.zeros(8, 4)}, "seen": 0}
    assert CheckpointEngine(tmp_path / "ckpt").load(state) == 3
    assert torch.equal(state["model"]["w"], expected) and state["seen"] == 2

    plain = {"model": {"w": torch.zeros(8, 4)}}  # what torchtitan or any DCP user would do
    dcp.load(plain, checkpoint_id=tmp_path / "ckpt" / "step-3", no_dist=True)
    assert torch.equal(plain["model"]["w"], expected)


if __name__ == "__main__":
    worker()
