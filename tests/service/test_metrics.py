"""`/metrics` as a Prometheus/Grafana site reads it: the exposition passes `promtool check metrics`
(its rules checked in Python, and by promtool itself where Debian's `prometheus` package can be
installed), per-GPU series under DCGM's labels, counters and a histogram, ETTR, one unit per metric."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from suanli.service.metrics import checkpoint_stall_histogram, ettr
from tests.service.conftest import REPO, apt_install, wait_state

MIXED = REPO / "examples" / "clusters" / "mixed-center.yaml"
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CAMEL = re.compile(r"[a-z][A-Z]")


def promtool_problems(text: str) -> list[str]:
    """The rules `promtool check metrics` applies (prometheus/util/promlint): a parseable text
    format, HELP on every family, `_total` on counters and only on them, no `_count`/`_sum`/
    `_bucket` outside histograms and summaries, snake_case names and labels, cumulative buckets
    ending in +Inf == _count, and no series twice."""
    problems = []
    seen: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for family in text_string_to_metric_families(text):
        name = family.name
        if not family.documentation:
            problems.append(f"{name}: no help text")
        if not NAME.match(name) or CAMEL.search(name):
            problems.append(f"{name}: not a snake_case metric name")
        if family.type != "counter" and name.endswith("_total"):
            problems.append(f"{name}: non-counter metrics should not have _total suffix")
        if family.type not in {"histogram", "summary"} and name.endswith(("_count", "_sum", "_bucket")):
            problems.append(f"{name}: a reserved suffix outside a histogram")
        buckets: dict[tuple, list[tuple[float, float]]] = {}  # per label set, le aside
        counts: dict[tuple, float] = {}
        for sample in family.samples:
            seen[(sample.name, tuple(sorted(sample.labels.items())))] += 1
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                problems.append(f"{sample.name}: counter metrics should have _total suffix")
            for label in sample.labels:
                if not LABEL.match(label) or CAMEL.search(label):
                    problems.append(f"{name}: label {label} is not snake_case")
            series = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                buckets.setdefault(series, []).append((float(sample.labels["le"]), sample.value))
            if sample.name.endswith("_count") and family.type == "histogram":
                counts[series] = sample.value
        for series, points in buckets.items():
            bounds = [b for b, _ in points]
            values = [v for _, v in points]
            if bounds != sorted(bounds) or values != sorted(values) or bounds[-1] != float("inf"):
                problems.append(f"{name}{dict(series)}: buckets are not cumulative up to +Inf")
            if values[-1] != counts.get(series):
                problems.append(f"{name}{dict(series)}: the +Inf bucket is not _count")
    problems += [f"{series[0]}{dict(series[1])}: exported {n} times" for series, n in seen.items() if n > 1]
    return problems


@pytest.fixture
def busy_centre(make_service):
    """The mixed centre (simulated) with a 16-GPU job running and a CPU job finished."""
    service = make_service(cluster_file=MIXED, simulate_speedup=600.0)
    train = service.post(
        "/jobs", content="name: big\nresources: {accelerators: H100:16}\nwalltime: 100h\nrun: t\n"
    )
    hpc = service.post("/jobs", content="name: cfd\nkind: hpc\nresources: {cpus: 8}\nwalltime: 1s\nrun: c\n")
    wait_state(service, hpc.json()["id"], {"succeeded"}, 20)
    wait_state(service, train.json()["id"], {"running"}, 20)
    return service, train.json()["id"]


def test_metrics_pass_promtools_rules(busy_centre):
    service, _ = busy_centre
    text = service.get("/metrics").text
    assert promtool_problems(text) == []
    assert promtool_problems("# HELP a_total x\n# TYPE a_total gauge\na_total 1\n")  # the check can fail
    promtool = shutil.which("promtool")
    if promtool is None and apt_install("prometheus") is None:
        promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool cannot be installed here; the Python check above applies its rules")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.strip() == "", checked.stdout + checked.stderr


def test_every_gpu_is_a_series_under_dcgm_labels_with_its_job(busy_centre):
    service, job_id = busy_centre
    families = {f.name: f for f in text_string_to_metric_families(service.get("/metrics").text)}
    held = families["suanli_gpu_allocated_ratio"].samples
    assert len(held) == 1024 and set(held[0].labels) == {"Hostname", "gpu", "UUID", "pool", "job"}
    mine = [s for s in held if s.labels["job"] == str(job_id)]
    assert (
        len(mine) == 16 and {s.labels["pool"] for s in mine} == {"h100"} and {s.value for s in mine} == {1.0}
    )
    assert len({(s.labels["Hostname"], s.labels["gpu"]) for s in mine}) == 16
    assert len({s.labels["UUID"] for s in held}) == 1024
    assert {s.value for s in held if s.labels["job"] == ""} == {0.0}


def test_capacity_is_one_unit_per_metric_and_counters_count(busy_centre):
    service, _ = busy_centre
    families = {f.name: f for f in text_string_to_metric_families(service.get("/metrics").text)}
    assert "suanli_pool_capacity" not in families
    gpus = {s.labels["pool"]: s.value for s in families["suanli_pool_accelerators"].samples}
    assert gpus == {"h100": 384, "a100": 256, "ascend": 256, "s4000": 128}  # no CPU pool among them
    cores = {s.labels["pool"]: s.value for s in families["suanli_pool_cpu_cores"].samples}
    assert cores["cpu"] == 12288
    submitted = {s.labels["queue"]: s.value for s in families["suanli_jobs_submitted"].samples}
    assert sum(submitted.values()) == 2
    finished = [(s.labels["state"], s.value) for s in families["suanli_jobs_finished"].samples]
    assert finished == [("succeeded", 1.0)]
    latency = {s.name: s for s in families["suanli_scheduling_latency_seconds"].samples}
    assert latency["suanli_scheduling_latency_seconds_count"].value == 2
    ratio = list(families["suanli_ettr"].samples)
    assert len(ratio) == 1 and 0.0 < ratio[0].value <= 1.0


def test_ettr_charges_time_lost_after_a_failure_not_the_first_wait():
    history = [
        {"to": "pending", "at": 0.0},
        {"to": "starting", "at": 500.0},  # waited 500 s first: not charged
        {"to": "running", "at": 510.0},
        {"to": "pending", "at": 610.0},  # failed after 100 s of running
        {"to": "starting", "at": 700.0},
        {"to": "running", "at": 710.0},
    ]
    assert ettr(history, now=810.0) == pytest.approx(200.0 / 310.0)
    assert ettr(history[:1], now=810.0) is None


def test_the_grafana_dashboard_reads_only_names_metrics_exports(busy_centre):
    service, _ = busy_centre
    families = list(text_string_to_metric_families(service.get("/metrics").text))
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    exported |= {f"{f.name}_total" for f in families if f.type == "counter"}  # declared, none counted yet
    assert "DCGM_FI_DEV_GPU_UTIL" in exported  # declared (HELP, TYPE) before any runtime reports it
    dashboard = json.loads((REPO / "examples" / "grafana" / "suanli-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for q in queries for name in re.findall(r"\b(?:suanli|DCGM)_[A-Za-z0-9_]+", q)}
    assert len(queries) >= 12 and "suanli_scheduling_latency_seconds_bucket" in used
    assert used - exported == set()


def test_checkpoint_stall_histogram_counts_only_steps_that_lost_time():
    records = [{"checkpoint_stall_s": s} for s in (0.0, 0.004, 0.2, 0.2, 40.0)] + [{"loss": 1.0}]
    buckets, total = checkpoint_stall_histogram(records)
    counts = dict(buckets)
    assert counts["0.001"] == 0 and counts["0.01"] == 1 and counts["0.5"] == 3 and counts["30"] == 3
    assert counts["+Inf"] == 4 and total == pytest.approx(40.404)
    assert checkpoint_stall_histogram([{"checkpoint_stall_s": 0.0}, {"step": 3}]) is None
