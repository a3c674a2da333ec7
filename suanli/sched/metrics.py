"""Metrics of a finished simulation (or of the live scheduler's history)."""

from __future__ import annotations

import numpy as np

from suanli.sched.cluster_state import CPU_TYPE, ClusterState
from suanli.sched.job import JobState, SchedJob

BOUNDED_SLOWDOWN_TAU_S = 10.0  # Feitelson's bounded slowdown threshold for short HPC jobs


def mean_active_jobs(submit_s: np.ndarray, finish_s: np.ndarray) -> np.ndarray:
    """For each job, the time-average number of jobs in the system while it was."""
    times = np.concatenate([submit_s, finish_s])
    steps = np.concatenate([np.ones_like(submit_s), -np.ones_like(finish_s)])
    order = np.argsort(times, kind="stable")
    times, steps = times[order], steps[order]
    count = np.cumsum(steps)
    area = np.concatenate([[0.0], np.cumsum(count[:-1] * np.diff(times))])

    def integral(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(times, t, side="right") - 1
        return area[i] + count[i] * (t - times[i])

    span = np.maximum(finish_s - submit_s, 1e-9)
    return np.maximum(1.0, (integral(finish_s) - integral(submit_s)) / span)


def share_runtime_s(job: SchedJob, capacity: dict[str, int], active_jobs: float) -> float:
    """Run time on an equal 1/N share of the cluster (Themis, NSDI'20; Gavel's "isolated" allocation):
    1/N of every accelerator type, time-sliced, so the job runs at the capacity-weighted mean of its
    per-type speeds (0 on types it cannot use), and a gang wider than its share runs that much less."""
    # The job's share is of the resources of its kind: GPUs for an accelerator job, nodes for CPU.
    capacity = {t: n for t, n in capacity.items() if (t == CPU_TYPE) == (job.gpus == 0)} or capacity
    total = sum(capacity.values())
    mean_rate = sum(n * job.rate(t) for t, n in capacity.items() if t in job.runtime_s) / total
    share_gpus = total / max(1.0, active_jobs)
    return max(1.0, job.width / share_gpus) / mean_rate


def ftf_rho(states: list[JobState], capacity: dict[str, int]) -> np.ndarray:
    """Finish-time fairness ρ = JCT / `share_runtime_s`, N the time-averaged number of jobs in the
    system during the job's life."""
    submit = np.array([s.job.submit_s for s in states])
    finish = np.array([s.finish_s for s in states], dtype=float)
    n = mean_active_jobs(submit, finish)
    ideal = np.array([share_runtime_s(s.job, capacity, k) for s, k in zip(states, n, strict=True)])
    return (finish - submit) / ideal


def summarize(states: list[JobState], cluster: ClusterState, decision_s: list[float]) -> dict[str, float]:
    done = [s for s in states if s.status == "finished" and s.finish_s is not None]
    if not done:
        return {"jobs": float(len(states)), "jobs_finished": 0.0}
    submit = np.array([s.job.submit_s for s in done])
    finish = np.array([s.finish_s for s in done], dtype=float)
    jct = finish - submit
    first = np.array([s.first_start_s for s in done], dtype=float)
    makespan = float(finish.max() - submit.min())
    gpu_total = sum(n for t, n in cluster.capacity.items() if t != CPU_TYPE)
    gpu_s = np.array([s.attained_gpu_s if s.job.gpus else 0.0 for s in done])
    rho = ftf_rho(done, cluster.capacity)
    hpc = [s for s in done if s.job.kind == "hpc"]
    slowdown = [
        max(1.0, (s.finish_s - s.job.submit_s) / max(s.run_s, BOUNDED_SLOWDOWN_TAU_S))
        for s in hpc
        if s.finish_s
    ]
    decisions = np.array(decision_s or [0.0]) * 1000
    return {
        "jobs": float(len(states)),
        "jobs_finished": float(len(done)),
        "avg_jct_h": float(jct.mean() / 3600),
        "p99_jct_h": float(np.percentile(jct, 99) / 3600),
        "makespan_h": makespan / 3600,
        "avg_queue_h": float((first - submit).mean() / 3600),
        "gpu_h_per_job": float(gpu_s.mean() / 3600),
        "utilization": float(gpu_s.sum() / (gpu_total * makespan)) if gpu_total and makespan else 0.0,
        "worst_ftf_rho": float(rho.max()),
        "avg_ftf_rho": float(rho.mean()),
        "preemptions_per_job": float(np.mean([s.preemptions for s in done])),
        "restarts_per_job": float(np.mean([s.starts - 1 for s in done])),
        "failures": float(sum(s.failures for s in done)),
        "hpc_bounded_slowdown": float(np.mean(slowdown)) if slowdown else 0.0,
        "decision_ms_mean": float(decisions.mean()),
        "decision_ms_p99": float(np.percentile(decisions, 99)),
    }
