"""Prometheus `/metrics`: cluster, queue and job figures read from the store at scrape time.

Names follow DCGM's exporter where a figure is one DCGM reports (`DCGM_FI_DEV_GPU_UTIL`,
`DCGM_FI_DEV_FB_USED`, published only when a job's runtime reports them) and `suanli_*` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from suanli.service.controller import Controller

JOB_FIGURES = ("mfu", "goodput", "tokens_per_s", "step", "loss")


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


class ServiceCollector(Collector):
    def __init__(self, controller: Controller, queues: list[str]) -> None:
        self.controller = controller
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        store = self.controller.store
        jobs = GaugeMetricFamily("suanli_jobs", "Jobs in the store by state", labels=["state"])
        for state, count in sorted(store.count_by_state().items()):
            jobs.add_metric([state], count)
        yield jobs

        active = store.list_jobs(states={"pending", "running"})
        pending = GaugeMetricFamily("suanli_queue_pending_jobs", "Jobs waiting per queue", labels=["queue"])
        for queue in sorted(self.queues):
            pending.add_metric([queue], sum(1 for j in active if j.queue == queue and j.state == "pending"))
        yield pending

        ratio = GaugeMetricFamily(
            "suanli_cluster_allocation_ratio",
            "Allocated share of each pool (accelerators, or CPUs for a CPU-only pool)",
            labels=["pool"],
        )
        capacity = GaugeMetricFamily(
            "suanli_pool_capacity", "Accelerators (or CPUs) per pool", labels=["pool"]
        )
        for pool, (allocated, total) in sorted(self.controller.pool_allocation().items()):
            ratio.add_metric([pool], allocated / total if total else 0.0)
            capacity.add_metric([pool], total)
        yield ratio
        yield capacity

        running = [j for j in active if j.state == "running"]
        families = {
            "mfu": GaugeMetricFamily(
                "suanli_job_mfu", "Model FLOPs utilisation (0..1)", labels=["job", "name"]
            ),
            "goodput": GaugeMetricFamily(
                "suanli_job_goodput", "Productive share of wall time", labels=["job", "name"]
            ),
            "tokens_per_s": GaugeMetricFamily(
                "suanli_job_tokens_per_second", "Training throughput", labels=["job", "name"]
            ),
            "step": GaugeMetricFamily("suanli_job_step", "Last completed step", labels=["job", "name"]),
            "loss": GaugeMetricFamily("suanli_job_loss", "Last reported loss", labels=["job", "name"]),
            "gpu_util": GaugeMetricFamily(
                "DCGM_FI_DEV_GPU_UTIL", "GPU utilisation (%)", labels=["job", "name"]
            ),
            "memory_used_mib": GaugeMetricFamily(
                "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (MiB)", labels=["job", "name"]
            ),
        }
        for job in running:
            for figure, value in job_figures(store.metrics(job.id, limit=2000)).items():
                families[figure].add_metric([str(job.id), job.name], value)
        yield from families.values()


def render(controller: Controller, queues: list[str]) -> bytes:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(controller, queues))
    return generate_latest(registry)
