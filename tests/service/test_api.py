"""The API end to end with the SQLite store and the local-process executor."""

from __future__ import annotations

import json

import pytest

from suanli.service.admission import QueueConfig, ServiceConfig
from tests.service.conftest import job_yaml, process_alive, wait_for, wait_state


def test_submit_runs_to_completion_with_history_and_logs(service):
    response = service.post("/jobs", content=job_yaml("hello", "echo hello from $SUANLI_JOB_ID"))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "pending"
    done = wait_state(service, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    assert [h["to"] for h in done["history"]] == ["pending", "starting", "running", "succeeded"]
    assert done["placement"]["pool"] == "local" and done["exit_code"] == 0
    assert service.get(f"/jobs/{job['id']}/logs").text.strip() == f"hello from {job['id']}"


def test_json_submission_and_filters(service):
    spec = {"name": "json-job", "kind": "hpc", "queue": "hpc", "run": "exit 3"}
    response = service.post("/jobs", content=json.dumps(spec), headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    failed = wait_state(service, response.json()["id"], {"succeeded", "failed"})
    assert failed["state"] == "failed" and failed["exit_code"] == 3 and "exit status 3" in failed["reason"]
    assert [j["name"] for j in service.get("/jobs", params={"queue": "hpc"}).json()] == ["json-job"]
    assert service.get("/jobs", params={"queue": "default"}).json() == []
    assert [j["name"] for j in service.get("/jobs", params={"state": "finished"}).json()] == ["json-job"]


def test_cancel_pending_and_running_jobs(service, tmp_path):
    # the first sleeper holds the one-node local pool; the others wait
    run = "sleep 30 & echo $! > $SUANLI_RUN_DIR/child.pid; wait"
    ids = [service.post("/jobs", content=job_yaml(f"sleeper{i}", run)).json()["id"] for i in range(4)]
    child = tmp_path / "data" / "runs" / str(ids[0]) / "1" / "child.pid"
    child_pid = int(wait_for(lambda: child.exists() and child.read_text().strip()))
    assert service.post(f"/jobs/{ids[0]}/cancel").json()["state"] == "cancelled"
    assert service.post(f"/jobs/{ids[-1]}/cancel").json()["state"] == "cancelled"
    for job_id in ids[1:-1]:
        service.post(f"/jobs/{job_id}/cancel")
    states = {service.get(f"/jobs/{i}").json()["state"] for i in ids}
    assert states == {"cancelled"}
    # nothing of a cancelled run survives it, not even a process it started in the background
    for pid in (int(service.get(f"/jobs/{ids[0]}").json()["engine_id"]), child_pid):
        assert wait_for(lambda pid=pid: not process_alive(pid), 10)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("name: x\nkind: hpc\nqueue: nope\nrun: 'true'\n", "queue: unknown queue 'nope'"),
        ("name: x\nresources: {accelerators: H100:8}\nrun: 'true'\n", "can never fit any pool"),
        (
            "name: x\nresources: {accelerators: H999:8}\nrun: 'true'\n",
            "resources.accelerators[0]: unknown accelerator",
        ),
        # (a CPU job naming another pool or more CPUs runs on this machine scaled down: test_cli.py)
        (
            "name: x\nresources: {pool: gpu, accelerators: H100:1}\nrun: 'true'\n",
            "resources.pool: unknown pool 'gpu'",
        ),
        ("name: x\nprioriti: 3\nrun: 'true'\n", "prioriti: is not a known field"),
        ("name: x\npriority: 5000\nrun: 'true'\n", "priority: must be <= 1000"),
        ("name: [x\n", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_input_is_a_one_line_4xx_and_writes_nothing(service, body, field):
    response = service.post("/jobs", content=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert field in detail and "\n" not in detail
    assert service.get("/jobs").json() == []


def test_quota_and_token(make_service):
    config = ServiceConfig(queues={"small": QueueConfig(max_cpus=1)}, token="s3cret")
    service = make_service(config)
    body = job_yaml("big", "true", queue="small", resources="{cpus: 2}")
    assert service.post("/jobs", content=body).status_code == 401
    auth = {"authorization": "Bearer s3cret"}
    response = service.post("/jobs", content=body, headers=auth)
    assert response.status_code == 422 and "resources.cpus" in response.json()["detail"]
    assert "quota of queue 'small'" in response.json()["detail"]
    ok = service.post("/jobs", content=job_yaml("fits", "true", queue="small"), headers=auth)
    assert ok.status_code == 201
    assert service.post(f"/jobs/{ok.json()['id']}/cancel").status_code == 401
    assert service.get("/jobs").status_code == 200  # reads stay open


def test_cluster_views_metrics_and_openapi(service):
    job_id = service.post("/jobs", content=job_yaml("busy", "sleep 30")).json()["id"]
    wait_state(service, job_id, {"running"})
    pools = service.get("/nodes").json()["pools"]
    # an HPC job holds whole nodes (one scheduling slot per CPU node in suanli.sched)
    assert pools[0]["name"] == "local" and pools[0]["cpus_allocated"] == pools[0]["cpus_total"]
    queues = {q["name"]: q for q in service.get("/queues").json()}
    assert queues["default"]["running"] == 1
    text = service.get("/metrics").text
    assert 'suanli_jobs{state="running"} 1.0' in text
    ratio = float(
        next(
            line for line in text.splitlines() if line.startswith("suanli_cluster_allocation_ratio")
        ).split()[-1]
    )
    assert ratio == pytest.approx(1.0)
    history = wait_for(lambda: service.get("/utilization").json().get("local"), 10)
    assert history[-1][1] == pytest.approx(ratio)  # sampled whenever the allocation changes
    service.post(f"/jobs/{job_id}/cancel")
    events = service.get("/events", params={"failures_only": True}).json()
    assert events[0]["to"] == "cancelled" and events[0]["job_id"] == job_id
    paths = service.get("/openapi.json").json()["paths"]
    assert {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/logs",
        "/nodes",
        "/queues",
        "/plan",
        "/metrics",
    } <= set(paths)
    assert service.get("/jobs/999").status_code == 404


def test_job_metrics_are_ingested_and_exported(service):
    step = '{"event": "step", "step": 1, "mfu": 0.41, "goodput": 0.9, "tokens_per_s": 900.0}'
    checkpoint = '{"event": "checkpoint", "step": 1, "checkpoint": "/tmp/ckpt-1"}'
    report = f"echo '{step}' >> $SUANLI_METRICS_FILE; echo '{checkpoint}' >> $SUANLI_METRICS_FILE; sleep 30"
    job_id = service.post("/jobs", content=job_yaml("reporter", report)).json()["id"]
    job = wait_for(lambda: (j := service.get(f"/jobs/{job_id}").json())["figures"].get("mfu") and j)
    assert job["figures"]["mfu"] == pytest.approx(0.41)
    assert job["checkpoints"][0]["path"] == "/tmp/ckpt-1"
    text = service.get("/metrics").text
    assert f'suanli_job_mfu{{job="{job_id}",name="reporter"}} 0.41' in text
    service.post(f"/jobs/{job_id}/cancel")


def test_a_checkpointed_job_recovers_from_a_failed_attempt(service):
    body = job_yaml(
        "flaky", '[ "$SUANLI_ATTEMPT" -ge 2 ] || exit 9; echo recovered', checkpoint="{interval: 10m}"
    )
    job_id = service.post("/jobs", content=body).json()["id"]
    done = wait_state(service, job_id, {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempt"] == 2
    assert [h["to"] for h in done["history"]] == [
        "pending",
        "starting",
        "running",
        "pending",
        "starting",
        "running",
        "succeeded",
    ]
    recovery = service.get("/events", params={"failures_only": True}).json()[0]
    assert recovery["to"] == "pending" and "attempt 1 failed (exit status 9)" in recovery["reason"]
    assert service.get(f"/jobs/{job_id}/logs").text.strip() == "recovered"
    plain = service.post("/jobs", content=job_yaml("fragile", "exit 9")).json()["id"]
    assert wait_state(service, plain, {"succeeded", "failed"})["attempt"] == 1  # no checkpoint: no retry


def test_moves_that_are_not_failures_do_not_use_up_a_jobs_retries(service):
    """Two requeues (as a preemption or a resize would) start attempts 2 and 3; attempt 3 then fails
    and is still retried, because only failed attempts count against the job."""
    run = '[ "$SUANLI_ATTEMPT" -ge 3 ] || sleep 30; [ "$SUANLI_ATTEMPT" -ne 3 ] || exit 9; echo done'
    job_id = service.post("/jobs", content=job_yaml("moved", run, checkpoint="{interval: 10m}")).json()["id"]
    for attempt in (1, 2):
        wait_for(
            lambda a=attempt: (
                (j := service.get(f"/jobs/{job_id}").json())["attempt"] == a and j["state"] == "running"
            )
        )
        service.post(f"/jobs/{job_id}/requeue")
    done = wait_state(service, job_id, {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempt"] == 4
    assert sum("attempt 3 failed (exit status 9)" in (h["reason"] or "") for h in done["history"]) == 1


def test_a_model_job_becomes_a_runtime_config_the_runtime_accepts(tmp_path):
    """A model job with no `run` is trained by `suanli train` with the config the service writes:
    steps from the token budget, checkpoints shared by the job's attempts, metrics where the
    service reads them."""
    from suanli.runtime.config import TrainConfig
    from suanli.service.controller import job_command, train_config
    from suanli.spec import JobSpec, validate

    spec = JobSpec.model_validate(
        {
            "name": "t",
            "model": "tiny-llama-test",
            "checkpoint": {"interval": "auto"},
            "training": {
                "seq_len": 64,
                "global_batch_size": 8,
                "total_tokens": 64 * 8 * 5,
                "precision": "fp32",
            },
        }
    )
    run_dir = tmp_path / "runs" / "3" / "2"
    config = validate(TrainConfig, train_config(spec, run_dir, None), source="train.yaml")
    assert config.steps == 5 and config.seq_len == 64 and config.precision == "fp32"
    assert config.checkpoint.folder == str(tmp_path / "runs" / "3" / "checkpoints")
    assert config.metrics.path == str(run_dir / "metrics.jsonl")
    assert job_command(spec, run_dir).endswith(f"train {run_dir / 'train.yaml'}")
    assert config.checkpoint.mtbf_s == 24 * 3600.0  # no declared failure rate: a preemption a day
    # at Llama 3's rate, 16 GPUs: the interruptions the simulator charges (sched.job.checkpoint_interval_s)
    failing = validate(TrainConfig, train_config(spec, run_dir, None, 16, 14.2), source="train.yaml")
    per_gpu_s = 14.2 / 1000 / (30 * 24 * 3600)
    assert failing.checkpoint.mtbf_s == pytest.approx(1 / (16 * per_gpu_s + 1 / (24 * 3600)))
