"""One live scheduler tick at scale: a `Scheduler` over 16,384 H100s (2,048 HGX nodes, the
1,024-GPU example's fabric) with 20,000 jobs queued or running, as the service drives it.

The jobs are the first 20,000 of the Philly list (their GPU counts and durations), all submitted at
t = 0. The first tick starts every job that fits ("fill"). Each following tick, 45 s later, sees
what a live service sees between two passes: one running job finished and one new job arrived; a
round-based policy's pass falls on its round boundary every `round_s` (those ticks are timed apart).
Each tick is timed on the wall clock and in this thread's CPU time: on a shared machine the wall
time is inflated by the load, the CPU time much less so. Each policy runs in its own process, as a
live service runs one: in a process that already ran other policies, the same ticks were measured
up to 40 % slower (the 16k running jobs' objects lie scattered in a fragmented heap).

    .venv/bin/python benchmarks/sched_live_tick.py [--policies fifo,suanli] [--ticks 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from suanli.sched.policies import make_policy
from suanli.sched.scheduler import Scheduler
from suanli.sched.traces.philly import load_philly
from suanli.spec import Cluster, load

POLICIES = "fifo,backfill,tiresias,gavel,ftf,suanli"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", default=POLICIES)
    parser.add_argument("--nodes", type=int, default=2048, help="HGX H100 nodes (8 GPUs each)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--ticks", type=int, default=30)
    args = parser.parse_args()
    names = args.policies.split(",")
    if len(names) > 1:
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        for name in names:
            command = [sys.executable, __file__, "--policies", name]
            command += ["--nodes", str(args.nodes), "--jobs", str(args.jobs), "--ticks", str(args.ticks)]
            subprocess.run(command, check=True)
        return
    base = load(Cluster, "examples/clusters/hgx-h100-1024.yaml")
    pools = [{"name": "h100", "node_type": "hgx-h100", "nodes": args.nodes}]
    cluster = Cluster.model_validate(base.model_dump() | {"name": "live", "pools": pools})
    trace = load_philly(None, ["h100-sxm"], args.jobs + args.ticks)
    for name in names:
        scheduler = Scheduler(cluster, make_policy(name))
        for job in trace[: args.jobs]:
            scheduler.submit(job)
        started = time.perf_counter()
        scheduler.tick(0.0)
        fill_ms = (time.perf_counter() - started) * 1e3
        running = [s for s in scheduler.jobs.values() if s.status == "running"]
        steady: list[tuple[float, float]] = []  # (wall ms, CPU ms) per tick
        rounds: list[tuple[float, float]] = []
        round_s = scheduler.policy.round_s
        for i in range(args.ticks):
            now_s = 45.0 * (i + 1)
            if running:
                scheduler.job_finished(running.pop().job.job_id, now_s)
            scheduler.submit(trace[args.jobs + i])
            started, started_cpu = time.perf_counter(), time.thread_time()
            decisions = scheduler.tick(now_s)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            cpu_ms = (time.thread_time() - started_cpu) * 1e3
            is_round = round_s is not None and now_s % round_s == 0
            (rounds if is_round else steady).append((elapsed_ms, cpu_ms))
            running += [scheduler.jobs[d.job_id] for d in decisions if d.action == "start"]
        busy = sum(1 for s in scheduler.jobs.values() if s.status == "running")
        line = f"{name}: {len(scheduler.jobs)} jobs ({busy} running) on {args.nodes * 8} GPUs"
        line += f"; fill tick {fill_ms:.0f} ms"
        for kind, times in (("ticks", steady), ("round ticks", rounds)):
            if times:
                wall, cpu = zip(*times, strict=True)
                line += f"; {kind} median {statistics.median(wall):.1f} ms (CPU {statistics.median(cpu):.1f})"
                line += f", max {max(wall):.1f} ms"
        print(line + f"; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
