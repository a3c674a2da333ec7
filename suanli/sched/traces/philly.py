"""The Philly job list (Jeon et al., ATC'19) as converted by Pollux's artifact: `timestamp` (submit),
`duration` (s), `num_gpus`. No GPU type: a job runs equally fast on every type it is offered."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from suanli.sched.job import SchedJob
from suanli.spec.errors import SpecError

DEFAULT_PATH = Path("/work/shared/data/traces/philly/philly_jobs_pollux.csv")


def load_philly(path: Path | str, accel_types: list[str], limit: int | None = None) -> list[SchedJob]:
    """Jobs from the Philly CSV, submit times relative to the first job; `limit` keeps the first N."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"philly trace: file not found: {path}")
    rows: list[tuple[float, float, int]] = []
    with path.open() as handle:
        reader = csv.DictReader(handle)
        for line, row in enumerate(reader, start=2):
            try:
                submit = datetime.fromisoformat(row["timestamp"]).timestamp()
                duration, gpus = float(row["duration"]), int(float(row["num_gpus"]))
            except (KeyError, TypeError, ValueError):
                raise SpecError(f"{path}:{line}: needs timestamp, duration (s) and num_gpus") from None
            if duration > 0 and gpus > 0:
                rows.append((submit, duration, gpus))
    rows.sort()
    rows = rows[:limit] if limit else rows
    start = rows[0][0] if rows else 0.0
    return [
        SchedJob(
            job_id=f"philly-{i}",
            submit_s=submit - start,
            gpus=gpus,
            runtime_s=dict.fromkeys(accel_types, duration),
        )
        for i, (submit, duration, gpus) in enumerate(rows)
    ]
