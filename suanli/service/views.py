"""The one view of a job that every API route shows (the jobs routes and the operator's routes)."""

from __future__ import annotations

from typing import Any

from suanli.service import metrics
from suanli.service.controller import Controller
from suanli.service.store import Job

SECRET = "<secret>"  # what the API shows for the value of an env entry named in `secret_envs`


def job_view(controller: Controller, job: Job, with_metrics: bool = False) -> dict[str, Any]:
    """A job as the API shows it: its record, the user's spec, figures from its metrics (and, when
    asked, the recent metrics and checkpoints)."""
    view = job.to_dict()
    view["spec"] = {k: v for k, v in job.spec.items() if not k.startswith("_")}
    secret = set(job.spec.get("secret_envs") or ())
    if secret:
        envs = view["spec"].get("envs", {})
        view["spec"]["envs"] = {k: SECRET if k in secret else v for k, v in envs.items()}
    records = controller.store.metrics(job.id, limit=2000) if with_metrics or job.state == "running" else []
    view["figures"] = metrics.job_figures(records)
    if with_metrics:
        view["metrics"] = records[-200:]
        view["checkpoints"] = controller.store.checkpoints(job.id)
    return view


def redact(text: str, job: Job) -> str:
    """`text` (a job's output) with the values of its secret env entries replaced by <secret>."""
    envs = job.spec.get("envs") or {}
    for value in sorted(
        (envs[n] for n in job.spec.get("secret_envs") or () if envs.get(n)), key=len, reverse=True
    ):
        text = text.replace(value, SECRET)
    return text
