"""`suanli queue` lists every matching job (not the newest 200) and ages them on the service's clock."""

from __future__ import annotations

import json
import re

import httpx
from typer.testing import CliRunner

from suanli.cli import app
from suanli.service.store import Store
from tests.service.conftest import REPO

MIXED = REPO / "examples" / "clusters" / "mixed-center.yaml"
runner = CliRunner()


def suanli(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_queue_lists_every_job_in_the_store(live_server_factory, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = Store(str(data / "suanli.db"))
    for i in range(1234):
        job = store.add_job({"name": f"old-{i}", "kind": "hpc", "run": "true"}, None, now=1000.0 + i)
        store.transition(job.id, "pending", "cancelled", now=1001.0 + i)
    store.close()
    url = live_server_factory(data_dir=data)
    listed = json.loads(suanli("queue", "--all", "--json", "--server", url))
    assert [j["id"] for j in listed] == list(range(1, 1235))


def test_age_is_never_negative_under_simulate(live_server_factory):
    url = live_server_factory(cluster_file=MIXED, simulate_speedup=3600.0)
    body = "name: waits\nresources: {accelerators: H100:8}\nwalltime: 1000h\nrun: train\n"
    assert httpx.post(f"{url}/jobs", content=body, timeout=30).status_code == 201
    output = suanli("queue", "--server", url)
    row = next(line for line in output.splitlines() if "waits" in line)
    age = re.search(r"(-?\d+)([sm])\s*\W*$", row)
    assert age and int(age.group(1)) >= 0, row
