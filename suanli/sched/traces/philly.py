"""The Philly job list (Jeon et al., ATC'19) as converted by Pollux's artifact: `timestamp` (submit),
`duration` (s), `num_gpus`. No GPU type: a job runs equally fast on every type it is offered."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from suanli.sched.job import SchedJob
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError

PHILLY_JOBS = "traces/philly/jobs.csv"  # under datasets/


def load_philly(path: Path | str | None, accel_types: list[str], limit: int | None = None) -> list[SchedJob]:
    """Jobs from a Philly CSV (default: the full list in datasets/), submit times relative to the
    first job; `limit` keeps the first N."""
    source = Path(path).absolute() if path else PHILLY_JOBS
    rows: list[tuple[float, float, int]] = []
    with io.StringIO(read_text(source)) as handle:
        reader = csv.DictReader(handle)
        for line, row in enumerate(reader, start=2):
            try:
                submit = datetime.fromisoformat(row["timestamp"]).timestamp()
                duration, gpus = float(row["duration"]), int(float(row["num_gpus"]))
            except (KeyError, TypeError, ValueError):
                raise SpecError(f"{source}:{line}: needs timestamp, duration (s) and num_gpus") from None
            if not (duration > 0 and gpus > 0):
                raise SpecError(
                    f"{source}:{line}: duration and num_gpus must be > 0, got {duration} and {gpus}"
                )
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
