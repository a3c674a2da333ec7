"""The elastic launcher: run N copies of a training program, restart them all when one dies.

    python -m suanli.ft.checkpoint.launcher --nproc 4 --max-restarts 3 train.py --lr 3e-4
    python -m suanli.ft.checkpoint.launcher --nproc 2 --agent-dir ckpt/agents -m suanli.runtime.train run.yaml

Workers see the same environment torchrun gives them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT, TORCHELASTIC_RESTART_COUNT), so a program runs unchanged under either. What it does
that torchrun does not:

- workers are forked from a launcher that has already imported torch: a restart costs
  milliseconds, not an import per worker;
- every attempt gets a fresh rendezvous store (no stale addresses from the failed attempt,
  cf. pytorch#135712);
- a worker exiting with status 2 (`DETERMINISTIC_EXIT`: bad config, unusable checkpoint, missing
  backend) stops the job at once: the same input would fail the same way on every retry;
- with `--agent-dir`, it starts this node's checkpoint agent, restarts it whenever it dies (the new
  agent adopts its predecessor's shared memory) and stops it at the end, so the snapshots outlive
  the workers and nothing is left in `/dev/shm`.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist

import suanli.ft.checkpoint.engine  # noqa: F401  (imported once here, inherited by every forked worker)
from suanli.ft.checkpoint.agent import AGENT_DIR_ENV, start_agent

TERMINATE_GRACE_S = 5.0
DETERMINISTIC_EXIT = 2


class _Stopped(Exception):
    """The launcher itself was asked to stop (SIGTERM)."""


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What torchrun sets for one rank of a single-node job whose store listens on `port`."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _worker(
    target: str, module: bool, args: list[str], rank: int, world_size: int, ports: Any, attempt: int
) -> None:
    port = ports.get()  # the store is started after the fork (see _attempt)
    os.environ.update(
        rank_environment(rank, world_size, port),
        TORCHELASTIC_RESTART_COUNT=str(attempt),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = [target, *args]
    if module:
        with warnings.catch_warnings():  # it was imported before the fork, on purpose
            warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")


def _stop(workers: list[multiprocessing.Process]) -> None:
    for worker in workers:
        if worker.exitcode is None:
            worker.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.exitcode is None:
            worker.kill()
            worker.join()


class _Supervisor:
    """Keeps the checkpoint agents of this machine alive for the length of the job."""

    def __init__(self, agent_dir: Path | None, nodes: int) -> None:
        self.agent_dir = agent_dir
        self._agents: list[subprocess.Popen] = (
            [start_agent(node, agent_dir) for node in range(nodes)] if agent_dir is not None else []
        )

    def check(self) -> None:
        if self.agent_dir is None:  # no memory tier, so no agents to watch
            return
        for node, agent in enumerate(self._agents):
            if agent.poll() is None:
                continue
            print(
                f"launcher: checkpoint agent of node {node} (pid {agent.pid}) exited with "
                f"{agent.returncode}; restarting it",
                file=sys.stderr,
                flush=True,
            )
            self._agents[node] = start_agent(node, self.agent_dir)

    def stop(self) -> None:
        for agent in self._agents:
            if agent.poll() is None:
                agent.terminate()
            agent.wait()


def launch(
    target: str,
    args: list[str],
    nproc: int,
    max_restarts: int = 0,
    monitor_interval_s: float = 0.1,
    *,
    module: bool = False,
    agent_dir: str | os.PathLike | None = None,
    agent_nodes: int = 1,
) -> int:
    """Run `target` (a script, or a module with `module=True`) in `nproc` processes.

    On a failure, stop all workers and start them again, up to `max_restarts` times, unless the
    failure is deterministic (exit status 2). Returns 0 when an attempt finishes with every worker
    exiting 0, else the failing exit status. With `agent_dir`, supervises the checkpoint agent of
    this node (of nodes 0..agent_nodes-1 when one machine emulates several, in tests and benchmarks).
    """
    if module:
        importlib.import_module(target)  # its imports happen once, before the fork
    agents = _Supervisor(Path(agent_dir) if agent_dir is not None else None, agent_nodes)
    if agent_dir is not None:
        os.environ[AGENT_DIR_ENV] = str(agent_dir)
    context = multiprocessing.get_context("fork")
    exit_code = 1
    try:
        for attempt in range(max_restarts + 1):
            exit_code = _attempt(context, target, module, args, nproc, attempt, agents, monitor_interval_s)
            if exit_code in (0, DETERMINISTIC_EXIT):
                break
    finally:
        agents.stop()
    if exit_code == DETERMINISTIC_EXIT:
        print("launcher: exit status 2 is a deterministic error; not restarting", file=sys.stderr)
    return exit_code


def _attempt(
    context,
    target: str,
    module: bool,
    args: list[str],
    nproc: int,
    attempt: int,
    agents: _Supervisor,
    monitor_interval_s: float,
) -> int:
    # Fork first, then start the store: the store serves from a thread, and a fork taken while
    # another thread holds a lock can leave the child deadlocked (seen as a rare hung worker).
    # The workers learn the store's port through a thread-free pipe.
    ports = context.SimpleQueue()
    workers = [
        context.Process(target=_worker, args=(target, module, args, rank, nproc, ports, attempt))
        for rank in range(nproc)
    ]
    for worker in workers:
        worker.start()
    store = dist.TCPStore(
        "127.0.0.1", 0, nproc, is_master=True, timeout=timedelta(minutes=5), wait_for_workers=False
    )
    for _ in workers:
        ports.put(store.port)
    try:
        while True:
            agents.check()
            codes = [worker.exitcode for worker in workers]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                exit_code = failed[0] if failed[0] > 0 else 128 - failed[0]
                print(
                    f"launcher: attempt {attempt} failed (exit codes {codes}); stopping workers",
                    file=sys.stderr,
                    flush=True,
                )
                return exit_code
            if all(code == 0 for code in codes):
                return 0
            time.sleep(monitor_interval_s)
    finally:
        _stop(workers)
        del store


def _raise_stopped(*_) -> None:
    raise _Stopped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, required=True, help="worker processes on this machine")
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument("--agent-dir", type=Path, default=None, help="start and supervise a checkpoint agent")
    parser.add_argument("-m", dest="module", action="store_true", help="the target is a module")
    parser.add_argument("target", help="a script, or a module with -m")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stopped)  # workers and agent are stopped on the way out
    try:
        code = launch(
            options.target,
            options.args,
            options.nproc,
            options.max_restarts,
            module=options.module,
            agent_dir=options.agent_dir,
        )
    except _Stopped:
        code = 128 + signal.SIGTERM
    sys.exit(code)


if __name__ == "__main__":
    main()
