"""The Slurm executor: the batch script it writes, and jobs run through a real single-node Slurm
(Debian's slurm-wlm + munge; the `slurm_conf` fixture below writes a one-node configuration)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from suanli.service.executors.base import EnginePool, Placement, Run
from suanli.service.executors.slurm import SlurmExecutor, batch_script, slurm_time
from suanli.spec import JobSpec
from suanli.spec.errors import ExecutorError
from tests.service.conftest import REPO, apt_install, job_yaml, wait_for, wait_state
from tests.service.test_live_view import EITHER

FAKE_GPU = "h100"  # GRES types as tests/service/data/two-pools.yaml names them
TWO_POOLS = REPO / "tests" / "service" / "data" / "two-pools.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _munge_works() -> bool:
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    return (
        encode.returncode == 0
        and subprocess.run(["unmunge"], input=encode.stdout, capture_output=True).returncode == 0
    )


def _start_munge() -> None:
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], capture_output=True)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root to start slurmd (tests run unprivileged here)")
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        reason = apt_install("slurm-wlm", "munge")
        if reason:
            pytest.skip(f"Slurm cannot be installed here: {reason}")
    if not _munge_works():
        _start_munge()
        wait_for(_munge_works, 10)
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (base / sub).mkdir()
    host = socket.gethostname().split(".")[0]
    conf = base / "slurm.conf"
    conf.write_text(
        f"""ClusterName=suanlitest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName={host} CPUs={os.cpu_count()} RealMemory=1024 Gres=gpu:h100:2,gpu:a100:2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=h100 Nodes={host} MaxTime=INFINITE State=UP
PartitionName=a100 Nodes={host} MaxTime=INFINITE State=UP
"""
    )
    for index in range(4):  # two pools' fake GPUs as typed GRES (AutoDetect off), as in the notes
        (base / f"fakegpu{index}").touch()
    (base / "gres.conf").write_text(
        f"AutoDetect=off\nNodeName={host} Name=gpu Type=h100 File={base}/fakegpu[0-1]\n"
        f"NodeName={host} Name=gpu Type=a100 File={base}/fakegpu[2-3]\n"
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
    subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True)

    def idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
        return "idle" in out

    try:
        wait_for(idle, 30, 0.3)
        yield conf
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int((base / pid_file).read_text()), 15)


def _run(folder: Path, spec: dict, placement: Placement) -> Run:
    job = JobSpec.model_validate(spec)
    return Run(7, 1, job, placement, folder / "run", job.run or "true")


def test_batch_script_has_nodes_gres_time_and_pass_through(tmp_path):
    spec = {
        "name": "train",
        "run": "torchrun train.py",
        "walltime": "1d",
        "resources": {"memory_gb": 500},
        "slurm": {"ntasks-per-node": 8, "exclusive": "", "time": "00:30:00"},
    }
    run = _run(tmp_path, spec, Placement("h100", 2, 16, "h100-sxm", 32))
    script = batch_script(run, EnginePool(partition="gpu", resource="h100"), ["gpu-node3", "gpu-node7"])
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --nodes=2" in header
    assert "#SBATCH --nodelist=gpu-node3,gpu-node7" in header  # the nodes the scheduler chose
    assert "#SBATCH --gres=gpu:h100:8" in header
    assert "#SBATCH --cpus-per-task=32" in header
    assert "#SBATCH --mem=500G" in header
    assert "#SBATCH --partition=gpu" in header
    assert "#SBATCH --ntasks-per-node=8" in header  # the job's own option wins over the default 1
    assert "#SBATCH --time=00:30:00" in header and not any("1-00:00:00" in line for line in header)
    assert "#SBATCH --exclusive=" in header
    assert "#SBATCH --job-name=suanli-7-1" in header
    assert script.index("torchrun train.py") > script.index("#SBATCH --job-name")
    assert slurm_time(90) == "0-00:02:00" and slurm_time(86400 + 3600) == "1-01:00:00"


def test_jobs_run_fail_and_cancel_on_a_real_slurm(make_service, slurm_conf):
    service = make_service(executor="slurm", executor_options={"slurm_conf": slurm_conf})
    # the job script leads its own process group: its stop handler signals that group, not slurmstepd
    leader = '[ "$(ps -o pgid= -p $$ | tr -d " ")" = "$$" ] && echo leads its group'
    ok = service.post(
        "/jobs", content=job_yaml("ok", f"echo on $SLURM_JOB_NODELIST in $SLURM_JOB_ID; {leader}")
    )
    ok = ok.json()
    bad = service.post("/jobs", content=job_yaml("bad", "exit 4")).json()
    done = wait_state(service, ok["id"], {"succeeded", "failed"}, 60)
    assert done["state"] == "succeeded", done
    log = service.get(f"/jobs/{ok['id']}/logs").text
    host = socket.gethostname().split(".")[0]
    assert log.strip().splitlines() == [f"on {host} in {done['engine_id']}", "leads its group"]
    failed = wait_state(service, bad["id"], {"succeeded", "failed"}, 60)
    assert failed["state"] == "failed" and failed["exit_code"] == 4
    long = service.post("/jobs", content=job_yaml("long", "sleep 60")).json()
    running = wait_state(service, long["id"], {"running"}, 30)
    env = {**os.environ, "SLURM_CONF": str(slurm_conf)}
    wait_for(
        lambda: (
            "RUNNING"
            in subprocess.run(
                ["squeue", "-h", "-j", running["engine_id"], "-o", "%T"],
                env=env,
                capture_output=True,
                text=True,
            ).stdout
        ),
        30,
    )
    assert service.post(f"/jobs/{long['id']}/cancel").json()["state"] == "cancelled"
    time.sleep(0.5)
    state = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", running["engine_id"], "-o", "%T"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert state in {"CANCELLED", "COMPLETING", ""}, state


def test_gres_requests_are_honoured_by_slurm(slurm_conf, tmp_path):
    """A 2-GPU run fits the node's two fake GPUs; a 4-GPU run on one node is refused by sbatch."""
    executor = SlurmExecutor(slurm_conf=slurm_conf)
    fits = _run(tmp_path / "fits", {"name": "g2", "run": "echo gres ok"}, Placement("gpu", 1, 2, FAKE_GPU, 1))
    fits.engine_id = executor.submit(fits)
    assert f"#SBATCH --gres=gpu:{FAKE_GPU}:2" in (fits.run_dir / "job.sbatch").read_text()
    status = wait_for(lambda: (s := executor.poll(fits)).state not in {"pending", "running"} and s, 30)
    assert status.state == "succeeded" and executor.logs(fits).strip() == "gres ok"
    assert executor.find(fits) == fits.engine_id  # found again by its run key, as after a restart
    too_many = _run(tmp_path / "big", {"name": "g4", "run": "true"}, Placement("gpu", 1, 4, FAKE_GPU, 1))
    with pytest.raises(ExecutorError, match="sbatch: "):
        executor.submit(too_many)


def test_a_two_pool_cluster_goes_out_as_partitions_and_gres_types(make_service, slurm_conf, tmp_path):
    """`suanli up --cluster two-pools.yaml --executor slurm` on a node with two GRES-typed partitions:
    a job that accepts A100 or H100 goes to the faster H100 partition while it is free, and the
    next one to A100; both run at once, each with its partition and GRES type."""
    service = make_service(
        executor="slurm", executor_options={"slurm_conf": slurm_conf}, cluster_file=TWO_POOLS
    )
    body = yaml.safe_dump({**EITHER, "run": "sleep 8"})
    host = socket.gethostname().split(".")[0]
    first = service.post("/jobs", content=body).json()
    assert wait_state(service, first["id"], {"running"}, 30)["placement"]["pool"] == "h100"
    second = service.post("/jobs", content=body).json()
    assert wait_state(service, second["id"], {"running"}, 30)["placement"]["pool"] == "a100"
    env = {**os.environ, "SLURM_CONF": str(slurm_conf)}
    for job, pool in ((first, "h100"), (second, "a100")):
        script = (tmp_path / "data" / "runs" / str(job["id"]) / "1" / "job.sbatch").read_text()
        assert f"#SBATCH --partition={pool}" in script and f"#SBATCH --gres=gpu:{pool}:2" in script
        assert f"#SBATCH --nodelist={host}" in script  # node 0 of the pool is the partition's node
        engine_id = service.get(f"/jobs/{job['id']}").json()["engine_id"]

        def queued(engine_id: str = engine_id) -> list[str] | None:
            out = subprocess.run(
                ["squeue", "-h", "-t", "all", "-j", engine_id, "-o", "%P %b %N"],
                env=env,
                capture_output=True,
                text=True,
            ).stdout.split()
            return out if len(out) == 3 else None  # the node list once Slurm has started it

        partition, gres, node = wait_for(queued, 30)
        assert (partition, node) == (pool, host) and gres.endswith(f"{pool}:2")
    for job in (first, second):
        assert wait_state(service, job["id"], {"succeeded", "failed"}, 60)["state"] == "succeeded"


def test_cluster_discover_writes_the_two_gres_pools_back(slurm_conf, tmp_path, monkeypatch):
    """`suanli cluster discover --executor slurm` on the two-partition node: the h100 and a100
    partitions become pools whose partition and GRES type send jobs back where they were found."""
    from typer.testing import CliRunner

    from suanli.cli import app
    from suanli.spec import Cluster, load

    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    out = tmp_path / "found.yaml"
    result = CliRunner().invoke(app, ["cluster", "discover", "--executor", "slurm", "-o", str(out)])
    assert result.exit_code == 0, result.output
    cluster = load(Cluster, out)
    pools = {p.name: p for p in cluster.pools}
    assert (pools["h100"].partition, pools["h100"].gres_type) == ("h100", "h100")
    assert cluster.accelerator_of("a100").slug == "a100-sxm-80gb"
    assert cluster.node_type_of("h100").accelerators_per_node == 2
    assert {"debug-h100", "debug-a100"} <= set(pools)  # the default partition holds both types
