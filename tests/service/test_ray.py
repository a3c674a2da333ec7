"""The Ray executor: jobs run as Ray Jobs on a local Ray instance started for this module (every
port chosen free and a private temp dir, so it cannot collide with another Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from suanli.service.executors.base import Placement, Run
from suanli.service.executors.ray import RayExecutor
from suanli.spec import Cluster, JobSpec, load
from tests.service.conftest import job_yaml, process_alive, wait_for, wait_state
from tests.service.test_live_view import EITHER, TWO_POOLS


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@dataclass(frozen=True)
class RayHead:
    address: str  # the dashboard (job API)
    gcs_port: int


@pytest.fixture(scope="module")
def ray_address(ray_head: RayHead) -> str:
    return ray_head.address


def _start_ray(command: list[str]) -> subprocess.Popen:
    """A Ray node in its own session (so its workers can be killed as a group), usage stats off."""
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )


@pytest.fixture(scope="module")
def ray_head():
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        pytest.skip("the `ray` command is not installed (pip install 'ray[default]')")
    temp_dir = tempfile.mkdtemp(prefix="sray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard, agent, agent_grpc, client, metrics, env_agent, node_manager, object_manager = _free_ports(
        9
    )
    command = [
        str(ray),
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--num-gpus=6",  # declared, not present: Ray only counts them
        '--resources={"h100": 2, "a100": 2}',  # the two pools of tests/service/data/two-pools.yaml
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--ray-client-server-port={client}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={env_agent}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        "--min-worker-port=0",
        "--max-worker-port=0",
    ]
    process = _start_ray(command)
    address = f"http://127.0.0.1:{dashboard}"

    def ready() -> bool:
        try:
            return httpx.get(f"{address}/api/version", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 90, 0.5)
        yield RayHead(address, gcs)
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever Ray left in the session we started
        shutil.rmtree(temp_dir, ignore_errors=True)


LONG_RUN = "sleep 120 & echo $! > $SUANLI_RUN_DIR/child.pid; wait"


def _run_dir(service, job_id: int) -> Path:
    return Path(service.app.state.settings.data_dir) / "runs" / str(job_id) / "1"


def _read(run_dir: Path) -> str | None:
    try:
        return (run_dir / "child.pid").read_text().strip() or None
    except FileNotFoundError:
        return None


def test_jobs_run_fail_and_cancel_as_ray_jobs(make_service, ray_address):
    service = make_service(executor="ray", executor_options={"address": ray_address})
    ok = service.post(
        "/jobs", content=job_yaml("ok", "echo ray job $SUANLI_JOB_ID attempt $SUANLI_ATTEMPT")
    ).json()
    bad = service.post("/jobs", content=job_yaml("bad", "exit 5")).json()
    done = wait_state(service, ok["id"], {"succeeded", "failed"}, 90)
    assert done["state"] == "succeeded", done
    store_id = service.app.state.controller.store.store_id
    assert done["engine_id"] == f"suanli-{store_id}-{ok['id']}-1"  # the Ray submission id is the run key
    assert f"ray job {ok['id']} attempt 1" in service.get(f"/jobs/{ok['id']}/logs").text
    failed = wait_state(service, bad["id"], {"succeeded", "failed"}, 90)
    assert failed["state"] == "failed" and failed["exit_code"] == 5
    long = service.post("/jobs", content=job_yaml("long", LONG_RUN)).json()
    running = wait_state(service, long["id"], {"running"}, 60)
    child_pid = int(wait_for(lambda: _read(_run_dir(service, long["id"])), 30))
    assert service.post(f"/jobs/{long['id']}/cancel").json()["state"] == "cancelled"
    assert wait_for(lambda: not process_alive(child_pid), 20)  # no stray process outlives a stopped run

    def ray_status() -> str:
        return httpx.get(f"{ray_address}/api/jobs/{running['engine_id']}", timeout=5).json()["status"]

    assert wait_for(lambda: ray_status() == "STOPPED", 30)


def test_a_two_pool_cluster_goes_out_as_ray_custom_resources(make_service, ray_address, tmp_path):
    """`suanli up --cluster two-pools.yaml --executor ray` on a Ray with an `h100` and an `a100`
    custom resource: the job that accepts either goes to the faster H100 pool first, the next to
    A100, and both run at once; a third H100 run waits for Ray's `h100` resource although two of
    the declared GPUs are free."""
    service = make_service(
        executor="ray", executor_options={"address": ray_address}, cluster_file=TWO_POOLS, data_dir=None
    )
    body = yaml.safe_dump({**EITHER, "run": "sleep 60"})
    jobs = []
    for pool in ("h100", "a100"):
        job = service.post("/jobs", content=body).json()
        assert wait_state(service, job["id"], {"running"}, 120)["placement"]["pool"] == pool
        jobs.append(service.get(f"/jobs/{job['id']}").json())

    def ray_status(engine_id: str) -> str:
        return httpx.get(f"{ray_address}/api/jobs/{engine_id}", timeout=5).json()["status"]

    assert wait_for(lambda: all(ray_status(j["engine_id"]) == "RUNNING" for j in jobs), 60)
    executor = RayExecutor(ray_address, load(Cluster, TWO_POOLS))
    spec = JobSpec.model_validate({"name": "third", "run": "true"})
    third = Run(99, 1, spec, Placement("h100", 1, 2, "h100-sxm"), tmp_path / "third", "true")
    third.engine_id = executor.submit(third)
    time.sleep(3)
    assert executor.poll(third).state == "pending"
    executor.cancel(third)
    for job in jobs:
        assert service.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelled"


def test_two_stores_on_one_ray_never_take_each_others_runs(make_service, ray_address):
    """Two servers on two stores both number their first job 1: the Ray submission ids (run keys)
    name the store, so each server starts, finds and follows its own run."""
    ray = {"executor": "ray", "executor_options": {"address": ray_address}}
    services = [make_service(data_dir=None, **ray) for _ in range(2)]
    jobs = [
        service.post("/jobs", content=job_yaml(f"j{i}", f"echo store {i}")).json()
        for i, service in enumerate(services)
    ]
    assert [j["id"] for j in jobs] == [1, 1]
    done = [wait_state(s, 1, {"succeeded", "failed"}, 90) for s in services]
    assert [d["state"] for d in done] == ["succeeded", "succeeded"]
    assert done[0]["engine_id"] != done[1]["engine_id"]
    assert [f"store {i}" in s.get("/jobs/1/logs").text for i, s in enumerate(services)] == [True, True]


def test_discover_writes_the_ray_node_table_as_a_cluster_the_service_runs_on(
    make_service, ray_address, tmp_path
):
    """`suanli cluster discover --executor ray`: this module's Ray (one node, 2 CPUs, custom resources
    h100: 2 and a100: 2) becomes two pools of the catalog's accelerators, each asking Ray for its own
    resource; a job for two H100s runs on it through `suanli up --cluster`."""
    from typer.testing import CliRunner

    from suanli.cli import app
    from suanli.service.discover import ray_nodes

    wait_for(lambda: ray_nodes(ray_address), 30)  # a Ray just started lists its node a moment later
    path = tmp_path / "discovered.yaml"
    result = CliRunner().invoke(
        app, ["cluster", "discover", "--executor", "ray", "--ray-address", ray_address, "-o", str(path)]
    )
    assert result.exit_code == 0, result.output
    cluster = load(Cluster, path)
    found = {
        pool.name: (pool.gres_type, pool.nodes, cluster.node_type_of(pool.name).accelerator)
        for pool in cluster.pools
    }
    assert found == {"h100": ("h100", 1, "h100-sxm"), "a100": ("a100", 1, "a100-sxm-80gb")}
    assert {cluster.node_type_of(p.name).accelerators_per_node for p in cluster.pools} == {2}
    service = make_service(executor="ray", executor_options={"address": ray_address}, cluster_file=path)
    body = "name: on-h100\nrun: echo on $SUANLI_POOL\nresources: {accelerators: H100:2}\n"
    job = service.post("/jobs", content=body).json()
    done = wait_state(service, job["id"], {"succeeded", "failed"}, 90)
    assert done["state"] == "succeeded" and done["placement"]["pool"] == "h100"
    assert "on h100" in service.get(f"/jobs/{job['id']}/logs").text


@pytest.fixture
def second_h100_node(ray_head: RayHead):
    """A second Ray node (a raylet of its own on this host) with four more `h100`, for this test only."""
    from suanli.service.discover import ray_nodes

    head_ip = wait_for(lambda: ray_nodes(ray_head.address), 30)[0]["node_ip"]
    ports = _free_ports(7)
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        f"--address={head_ip}:{ray_head.gcs_port}",
        "--block",
        "--num-cpus=4",
        "--num-gpus=4",
        '--resources={"h100": 4}',  # room for the whole gang: only STRICT_SPREAD keeps it on two nodes
        "--disable-usage-stats",
        *(
            f"--{flag}={port}"
            for flag, port in zip(
                (
                    "node-manager-port",
                    "object-manager-port",
                    "metrics-export-port",
                    "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port",
                    "runtime-env-agent-port",
                    "ray-client-server-port",
                ),
                ports,
                strict=True,
            )
        ),
        "--min-worker-port=0",
        "--max-worker-port=0",
    ]
    process = _start_ray(command)
    try:
        wait_for(lambda: len([n for n in ray_nodes(ray_head.address) if n["state"] == "ALIVE"]) == 2, 90, 0.5)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_a_gang_over_two_nodes_is_a_strict_spread_placement_group(
    make_service, ray_address, second_h100_node, tmp_path
):
    """H100:4 on a pool of two 2-GPU nodes: the scheduler places the gang on both nodes; on Ray it is
    one placement group, a bundle per node with the pool's `h100` resource, STRICT_SPREAD, so each
    rank runs on a different Ray node with node 0's address to meet at; the gang ends once."""
    cluster = yaml.safe_load(TWO_POOLS.read_text())
    cluster["pools"][0]["nodes"] = 2  # h100: the head's two and the second node's two
    path = tmp_path / "two-h100-nodes.yaml"
    path.write_text(yaml.safe_dump(cluster))
    service = make_service(executor="ray", executor_options={"address": ray_address}, cluster_file=path)
    run = "echo rank $SUANLI_NODE_RANK of $SUANLI_NUM_NODES on $SUANLI_RAY_NODE_ID meets at $MASTER_ADDR"
    job = service.post(
        "/jobs", content=f"name: gang\nrun: {run}\nresources: {{accelerators: H100:4}}\n"
    ).json()
    done = wait_state(service, job["id"], {"succeeded", "failed"}, 120)
    assert done["state"] == "succeeded", (done["reason"], service.get(f"/jobs/{job['id']}/logs").text[-3000:])
    assert (done["placement"]["nodes"], done["placement"]["nodelist"]) == (2, ["h100-0", "h100-1"])

    def both_ranks() -> dict[str, str] | None:  # Ray prefixes each task's lines; the last may lag the end
        log = service.get(f"/jobs/{job['id']}/logs").text
        ranks = dict(re.findall(r"rank (\d) of 2 on (\w+) meets at \S+", log))
        return ranks if set(ranks) == {"0", "1"} else None

    seen = wait_for(both_ranks, 30, 0.5)
    assert seen["0"] != seen["1"]  # two different Ray nodes
