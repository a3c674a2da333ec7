"""A small elastic launcher: run N copies of a training script, restart them all when one dies.

    python -m suanli.ft.checkpoint.launcher --nproc 4 --max-restarts 3 train.py --lr 3e-4

Workers see the same environment torchrun gives them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT, TORCHELASTIC_RESTART_COUNT), so a script runs unchanged under either. Two
differences make restarts cheap on one machine: workers are forked from a launcher that has
already imported torch (a restart costs milliseconds, not an import per worker), and every attempt
gets a fresh rendezvous store (no stale addresses from the failed attempt, cf. pytorch#135712).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import runpy
import signal
import sys
import time
from datetime import timedelta

import torch.distributed as dist

import suanli.ft.checkpoint.engine  # noqa: F401  (imported once here, inherited by every forked worker)

TERMINATE_GRACE_S = 5.0


def _worker(script: str, args: list[str], rank: int, world_size: int, port: int, attempt: int) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TORCHELASTIC_RESTART_COUNT=str(attempt),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


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


def launch(
    script: str, args: list[str], nproc: int, max_restarts: int = 0, monitor_interval_s: float = 0.1
) -> int:
    """Run `script` in `nproc` processes; on any failure stop all and restart, up to `max_restarts` times.

    Returns 0 when an attempt finishes with every worker exiting 0, else the failing exit code.
    """
    context = multiprocessing.get_context("fork")
    exit_code = 1
    for attempt in range(max_restarts + 1):
        store = dist.TCPStore(
            "127.0.0.1", 0, nproc, is_master=True, timeout=timedelta(minutes=5), wait_for_workers=False
        )
        workers = [
            context.Process(
                target=_worker, args=(script, args, rank, nproc, store.port, attempt), daemon=False
            )
            for rank in range(nproc)
        ]
        for worker in workers:
            worker.start()
        while True:
            codes = [worker.exitcode for worker in workers]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                exit_code = failed[0] if failed[0] > 0 else 128 - failed[0]
                print(
                    f"launcher: attempt {attempt} failed (exit codes {codes}); stopping workers",
                    file=sys.stderr,
                )
                _stop(workers)
                break
            if all(code == 0 for code in codes):
                return 0
            time.sleep(monitor_interval_s)
        del store
    return exit_code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, required=True, help="worker processes on this machine")
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    sys.exit(launch(options.script, options.args, options.nproc, options.max_restarts))


if __name__ == "__main__":
    main()
