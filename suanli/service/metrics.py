"""Prometheus `/metrics`: cluster, queue, GPU and job figures read from the store and the scheduler
at scrape time.

Per-GPU series carry the DCGM exporter's labels `Hostname`, `gpu`, `UUID` plus the `pool` and the
`job` on it (not `modelName`: promtool's lint refuses camelCase label names; the pool names the
type), and use DCGM's names where the figure is one DCGM reports (`DCGM_FI_DEV_GPU_UTIL` in %,
`DCGM_FI_DEV_FB_USED` in MiB — published only for GPUs whose job's runtime reports them);
everything else is `suanli_*`, one unit per metric, named after it.
The service knows no hardware UUID: `UUID` is the scheduler's stable name for the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from suanli.service.occupancy import gpu_grid
from suanli.service.scheduling import SuanliScheduler

if TYPE_CHECKING:
    from suanli.service.controller import Controller

JOB_FIGURES = ("mfu", "goodput", "tokens_per_s", "step", "loss")
GPU_LABELS = ["Hostname", "gpu", "UUID", "pool", "job"]
# queue waits run from seconds (an idle pool) to days (a full centre, Philly's multi-day waits)
START_LATENCY_BUCKETS_S = (
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4 * 3600.0,
    12 * 3600.0,
    86400.0,
    7 * 86400.0,
)
# time lost to one step's checkpointing: milliseconds (an overlapped copy) to tens of seconds (a
# blocking write of a large state)
CHECKPOINT_STALL_BUCKETS_S = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


def job_figures(records: list[dict[str, Any]]) -> dict[str, float]:
    """The latest value of each figure a run reported; goodput from the runtime's accounting of
    productive time and badput when the run reports runtime step records."""
    figures: dict[str, float] = {}
    for record in records:
        for name in (*JOB_FIGURES, "gpu_util", "memory_used_mib"):
            value = record.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[name] = float(value)
    if "goodput" not in figures and any(r.get("event") == "step" for r in records):
        try:
            from suanli.runtime.metrics import goodput

            figures["goodput"] = goodput([r for r in records if "event" in r and "attempt" in r]).goodput
        except (ImportError, KeyError, TypeError, ValueError):
            pass
    return figures


def checkpoint_stall_histogram(records: list[dict[str, Any]]) -> tuple[list[tuple[str, float]], float] | None:
    """Cumulative buckets (ending with +Inf) and the sum of the time the job's steps lost to
    checkpointing, over the steps that lost any; None when none did."""
    stalls = [
        float(r["checkpoint_stall_s"])
        for r in records
        if isinstance(r.get("checkpoint_stall_s"), int | float) and r["checkpoint_stall_s"] > 0
    ]
    if not stalls:
        return None
    bounds = CHECKPOINT_STALL_BUCKETS_S
    buckets = [(f"{bound:g}", float(sum(1 for s in stalls if s <= bound))) for bound in bounds]
    return [*buckets, ("+Inf", float(len(stalls)))], sum(stalls)


def ettr(history: list[dict[str, Any]], now: float) -> float | None:
    """Effective training time ratio: time spent running over wall time since the job first started
    (Kokolis et al., "Revisiting Reliability in Large-Scale ML Research Clusters", 2024: queue time
    after a failure counts against it, the first wait in the queue does not). None before a start."""
    running_s, since, first_start = 0.0, None, None
    for change in history:
        if change["to"] == "starting" and first_start is None:
            first_start = change["at"]
        if change["to"] == "running":
            since = change["at"]
        elif since is not None:
            running_s += change["at"] - since
            since = None
    if first_start is None or now <= first_start:
        return None
    if since is not None:
        running_s += now - since
    return min(1.0, running_s / (now - first_start))


class ServiceCollector(Collector):
    def __init__(self, controller: Controller, queues: list[str]) -> None:
        self.controller = controller
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs_and_queues()
        yield from self._pools()
        yield from self._counters()
        yield from self._gpus()
        yield from self._running_jobs()

    def _jobs_and_queues(self) -> Iterator[Metric]:
        store = self.controller.store
        jobs = GaugeMetricFamily("suanli_jobs", "Jobs in the store by state", labels=["state"])
        for state, count in sorted(store.count_by_state().items()):
            jobs.add_metric([state], count)
        yield jobs
        by_queue = store.count_by_queue_state()
        pending = GaugeMetricFamily("suanli_queue_pending_jobs", "Jobs waiting per queue", labels=["queue"])
        running = GaugeMetricFamily(
            "suanli_queue_running_jobs", "Jobs starting or running per queue", labels=["queue"]
        )
        for queue in sorted(set(self.queues) | set(by_queue)):
            states = by_queue.get(queue, {})
            pending.add_metric([queue], states.get("pending", 0))
            running.add_metric([queue], states.get("starting", 0) + states.get("running", 0))
        yield pending
        yield running

    def _pools(self) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "suanli_cluster_allocation_ratio",
            "Allocated share of each pool (of its accelerators, or of its CPUs for a CPU-only pool)",
            labels=["pool"],
        )
        accelerators = GaugeMetricFamily(
            "suanli_pool_accelerators", "Accelerators in the pool", labels=["pool", "accelerator"]
        )
        allocated = GaugeMetricFamily(
            "suanli_pool_accelerators_allocated", "Accelerators holding a job", labels=["pool", "accelerator"]
        )
        cpus = GaugeMetricFamily("suanli_pool_cpu_cores", "CPU cores in the pool", labels=["pool"])
        cpus_allocated = GaugeMetricFamily(
            "suanli_pool_cpu_cores_allocated", "CPU cores of a CPU-only pool holding a job", labels=["pool"]
        )
        with self.controller.lock:
            snapshot = self.controller.scheduler.snapshot()
        for pool, use in sorted(snapshot.items()):
            if use["accelerators_total"]:
                accelerators.add_metric([pool, use["accelerator"]], use["accelerators_total"])
                allocated.add_metric([pool, use["accelerator"]], use["accelerators_allocated"])
                ratio.add_metric([pool], use["accelerators_allocated"] / use["accelerators_total"])
            else:
                cpus_allocated.add_metric([pool], use["cpus_allocated"])
                ratio.add_metric(
                    [pool], use["cpus_allocated"] / use["cpus_total"] if use["cpus_total"] else 0.0
                )
            cpus.add_metric([pool], use["cpus_total"])
        yield from (ratio, accelerators, allocated, cpus, cpus_allocated)

    def _counters(self) -> Iterator[Metric]:
        store = self.controller.store
        submitted = CounterMetricFamily("suanli_jobs_submitted", "Jobs accepted", labels=["queue"])
        restarts = CounterMetricFamily(
            "suanli_job_restarts",
            "Running jobs sent back to the queue (a failure, a preemption or a resize)",
            labels=["queue"],
        )
        finished = CounterMetricFamily("suanli_jobs_finished", "Jobs that ended", labels=["queue", "state"])
        for queue, src, dst, count in sorted(
            store.transition_counts(), key=lambda row: (row[0], str(row[1]), row[2])
        ):
            if src is None:
                submitted.add_metric([queue], count)
            elif src == "running" and dst == "pending":
                restarts.add_metric([queue], count)
            elif dst in {"succeeded", "failed", "cancelled"}:
                finished.add_metric([queue, dst], count)
        yield from (submitted, restarts, finished)
        counts, started, total_s = store.start_latency_buckets(START_LATENCY_BUCKETS_S)
        latency = HistogramMetricFamily(
            "suanli_scheduling_latency_seconds", "Time from submission to a job's first start"
        )
        buckets = [
            (f"{bound:g}", count) for bound, count in zip(START_LATENCY_BUCKETS_S, counts, strict=True)
        ]
        latency.add_metric([], [*buckets, ("+Inf", started)], total_s)
        yield latency

    def _gpus(self) -> Iterator[Metric]:
        if not isinstance(self.controller.scheduler, SuanliScheduler):
            return
        with self.controller.lock:
            nodes = gpu_grid(self.controller.scheduler)
        held = GaugeMetricFamily(
            "suanli_gpu_allocated_ratio",
            "Share of the accelerator a job holds (1: whole, less: MIG/MPS/time-slice; job empty: idle)",
            labels=GPU_LABELS,
        )
        util = GaugeMetricFamily(
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilisation (in %), as the job's runtime reports it",
            labels=GPU_LABELS,
        )
        memory = GaugeMetricFamily(
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB), as the job's runtime reports it",
            labels=GPU_LABELS,
        )
        running = {j.id: j for j in self.controller.store.list_jobs(states={"running"})}
        reported = {
            job_id: job_figures(self.controller.store.metrics(job_id, limit=200)) for job_id in running
        }
        for node in nodes:
            if node["accelerator"] == "cpu":
                continue
            for gpu in node["gpus"]:
                base = [node["name"], str(gpu["gpu"]), f"{node['name']}-gpu{gpu['gpu']}", node["pool"]]
                if not gpu["shares"]:
                    held.add_metric([*base, ""], 0.0)
                for job_id, share in sorted(gpu["shares"].items()):
                    labels = [*base, str(job_id)]
                    held.add_metric(labels, share)
                    figures = reported.get(job_id, {})
                    if "gpu_util" in figures:
                        util.add_metric(labels, figures["gpu_util"])
                    if "memory_used_mib" in figures:
                        memory.add_metric(labels, figures["memory_used_mib"])
        yield from (held, util, memory)

    def _running_jobs(self) -> Iterator[Metric]:
        store = self.controller.store
        now = self.controller.clock()
        families = {
            "mfu": GaugeMetricFamily(
                "suanli_job_mfu", "Model FLOPs utilisation (0..1)", labels=["job", "name"]
            ),
            "goodput": GaugeMetricFamily(
                "suanli_job_goodput", "Productive share of wall time (0..1)", labels=["job", "name"]
            ),
            "tokens_per_s": GaugeMetricFamily(
                "suanli_job_tokens_per_second", "Training throughput (tokens/s)", labels=["job", "name"]
            ),
            "step": GaugeMetricFamily("suanli_job_step", "Last completed step", labels=["job", "name"]),
            "loss": GaugeMetricFamily("suanli_job_loss", "Last reported loss", labels=["job", "name"]),
        }
        ratio = GaugeMetricFamily(
            "suanli_ettr",
            "Effective training time ratio: running time over wall time since the first start (0..1)",
            labels=["job", "name"],
        )
        stall = HistogramMetricFamily(
            "suanli_checkpoint_stall_seconds",
            "Training time a step lost to checkpointing (blocking + the save's slowdown)",
            labels=["job", "name"],
        )
        for job in store.list_jobs(states={"running"}):
            records = store.metrics(job.id, limit=2000)
            for figure, value in job_figures(records).items():
                if figure in families:
                    families[figure].add_metric([str(job.id), job.name], value)
            share = ettr(store.history(job.id), now)
            if share is not None:
                ratio.add_metric([str(job.id), job.name], share)
            histogram = checkpoint_stall_histogram(records)
            if histogram is not None:
                stall.add_metric([str(job.id), job.name], *histogram)
        yield from families.values()
        yield ratio
        yield stall


def render(controller: Controller, queues: list[str]) -> bytes:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(controller, queues))
    return generate_latest(registry)
