"""The client verbs (`submit`, `queue`, `status`, `logs`, `cancel`, `nodes`) against a live service."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from suanli.cli import app
from tests.service.conftest import REPO, job_yaml, wait_for

runner = CliRunner()


def suanli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_client_verbs_against_a_live_service(live_server, tmp_path):
    job_file = tmp_path / "hello.yaml"
    job_file.write_text(job_yaml("cli-hello", "echo line one; sleep 0.5; echo line two"))
    submitted = suanli("submit", str(job_file), "--wait", "--server", live_server)
    assert submitted.exit_code == 0, submitted.output
    assert "submitted job 1 (cli-hello)" in submitted.output and "job 1 succeeded" in submitted.output

    logs = suanli("logs", "1", "--server", live_server)
    assert logs.output.splitlines() == ["line one", "line two"]
    status = suanli("status", "1", "--server", live_server)
    assert "cli-hello" in status.output and "succeeded" in status.output and "running" in status.output
    queue = json.loads(suanli("queue", "--all", "--json", "--server", live_server).output)
    assert [(j["id"], j["state"]) for j in queue] == [(1, "succeeded")]

    job_file.write_text(job_yaml("cli-follow", "for i in 1 2 3; do echo tick $i; sleep 0.3; done"))
    assert suanli("submit", str(job_file), "--server", live_server).exit_code == 0
    followed = suanli("logs", "2", "-f", "--server", live_server)
    assert followed.output.split() == ["tick", "1", "tick", "2", "tick", "3"]

    job_file.write_text(job_yaml("cli-long", "sleep 60"))
    suanli("submit", str(job_file), "--server", live_server)
    wait_for(lambda: "running" in suanli("status", "3", "--server", live_server).output)
    assert "cli-long" in suanli("queue", "--server", live_server).output
    cancelled = suanli("cancel", "3", "--server", live_server)
    assert cancelled.output.strip() == "job 3 (cli-long): cancelled"
    nodes = json.loads(suanli("nodes", "--json", "--server", live_server).output)
    assert nodes["pools"][0]["name"] == "local" and nodes["executor"] == "local"


def test_client_errors_are_one_line(live_server, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(job_yaml("bad", "true", queue="nope"))
    result = runner.invoke(app, ["submit", str(bad), "--server", live_server])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: queue: unknown queue 'nope'")
    missing = runner.invoke(app, ["status", "42", "--server", live_server])
    assert missing.exit_code == 2 and "job 42: no such job" in missing.output
    down = runner.invoke(app, ["queue", "--server", "http://127.0.0.1:9"])
    assert down.exit_code == 2 and "cannot reach the Suanli service" in down.output
    assert runner.invoke(app, ["submit", str(tmp_path / "none.yaml")]).exit_code == 2


def test_the_readme_hpc_example_runs_on_a_default_up(live_server):
    """README: `suanli up` then `suanli submit examples/jobs/hpc-lammps.yaml`. The job asks for four
    nodes of a `cpu` pool; on the default cluster (this machine) it is placed on the one local node
    and its command runs there (LAMMPS is not installed, so the run itself ends with its exit status)."""
    submitted = suanli("submit", str(REPO / "examples" / "jobs" / "hpc-lammps.yaml"), "--server", live_server)
    assert submitted.exit_code == 0, submitted.output
    assert "submitted job 1 (lammps-melt)" in submitted.output
    job = wait_for(
        lambda: (
            (j := json.loads(suanli("status", "1", "--json", "--server", live_server).output))["state"]
            in {"succeeded", "failed"}
            and j
        ),
        30,
    )
    assert job["placement"]["pool"] == "local" and job["placement"]["nodes"] == 1
    assert [h["to"] for h in job["history"]][:3] == ["pending", "starting", "running"]
    assert job["spec"]["num_nodes"] == 4 and job["spec"]["resources"]["pool"] == "cpu"  # kept as submitted
