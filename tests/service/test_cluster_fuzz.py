"""A hypothesis fuzz of cluster files against the running service, as tests/service/test_limits.py
fuzzes job bodies: a file is refused at start-up with one line naming the field, or the service runs
on it — every read answers, no 500, no traceback — and nothing it accepted is more than the store
holds or an engine takes (pool names within the store's column, partitions and GRES types that go
into an `#SBATCH` line as one word)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from suanli.service.app import Settings, create_app
from suanli.service.executors.base import Placement, Run, engine_pools
from suanli.service.executors.slurm import sbatch_options
from suanli.service.store import PoolSampleRow
from suanli.spec import JobSpec
from suanli.spec.errors import SuanliError
from tests.service.test_limits import VALUES
from tests.service.test_live_view import TWO_POOLS

BASE = yaml.safe_load(TWO_POOLS.read_text())
WORDS = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)
LONG_WORDS = st.from_regex(r"[a-z]{95,110}", fullmatch=True)  # about the store's 100 characters
NAMES = st.one_of(WORDS, WORDS, WORDS, LONG_WORDS, st.text(max_size=30))  # mostly names the schema takes
POOLS = st.fixed_dictionaries(
    {
        "name": NAMES,
        "node_type": st.sampled_from(["h100x2", "a100x2", "dgx-h100", "no-such-type"]),
        "nodes": st.integers(min_value=1, max_value=300_000) | st.integers(max_value=0),
    },
    optional={"partition": NAMES, "gres_type": NAMES},
)
CLUSTERS = st.fixed_dictionaries(
    {"name": st.text(max_size=30), "pools": st.lists(POOLS, min_size=1, max_size=2)},
    optional={"failures_per_1k_gpu_month": VALUES},
).map(lambda c: {**c, "node_types": BASE["node_types"]})
READS = (
    "/nodes",
    "/ops/overview",
    "/ops/gpus",
    "/ops/series",
    "/metrics",
    "/utilization",
    "/queues",
    "/jobs",
)
STORE_POOL_CHARS = PoolSampleRow.__table__.c.pool.type.length


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=CLUSTERS)
@example(cluster={**BASE, "pools": [{"name": "p" * 101, "node_type": "h100x2", "nodes": 1}]})
@example(
    cluster={
        **BASE,
        "pools": [{"name": "h", "node_type": "h100x2", "nodes": 1, "partition": "gpu\nrm -rf ~"}],
    }
)
@example(cluster={**BASE, "pools": [{"name": "h", "node_type": "h100x2", "nodes": 10**9}]})
def test_fuzzed_cluster_files_are_refused_in_one_line_or_served_without_a_500(cluster):
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "centre.yaml"
        path.write_text(yaml.safe_dump(cluster))
        try:
            app = create_app(
                Settings(data_dir=Path(scratch), cluster_file=path, simulate_speedup=3600.0, tick_s=0.05)
            )
        except SuanliError as exc:  # each problem on a line of its own, naming the file and field
            assert all(line.startswith("centre.yaml: ") for line in str(exc).splitlines()), str(exc)
            return
        accepted = app.state.controller.cluster
        event("accepted")
        assert all(len(pool.name) <= STORE_POOL_CHARS for pool in accepted.pools)
        spec = JobSpec.model_validate({"name": "probe", "run": "true"})
        for pool, engine in engine_pools(accepted).items():
            run = Run(1, 1, spec, Placement(pool, 1, 1, "h100-sxm"), Path(scratch), "true")
            options = sbatch_options(run, engine)
            assert all(len(options[key].split()) == 1 for key in ("partition", "gres")), options
        with TestClient(app) as client:
            for read in READS:
                response = client.get(read)
                assert response.status_code == 200, (read, response.text)
            pool = accepted.pools[0].name
            body = {"name": "probe", "run": "true", "walltime": "1h", "resources": {"pool": pool}}
            submitted = client.post("/jobs", json=body)
            assert submitted.status_code in {201, 422}, submitted.text
            assert "Traceback" not in submitted.text
            if submitted.status_code == 201:
                stored = client.get(f"/jobs/{submitted.json()['id']}").json()
                assert stored["spec"]["resources"]["pool"] == pool
