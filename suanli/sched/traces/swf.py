"""HPC logs in the Standard Workload Format of the Parallel Workloads Archive (Feitelson et al.):
field 2 submit time, 4 run time, 5 allocated processors (8 requested if 5 is missing), 9 requested
time. Each job becomes an `hpc` job on whole CPU nodes (`procs_per_node` processors a node)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from suanli.sched.cluster_state import CPU_TYPE
from suanli.sched.job import SchedJob
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError


def load_swf(path: Path | str, procs_per_node: int = 1, limit: int | None = None) -> list[SchedJob]:
    path = Path(path).absolute()
    jobs: list[SchedJob] = []
    with io.StringIO(read_text(path)) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            fields = line.split()
            if len(fields) < 9:
                raise SpecError(f"{path}:{line_no}: an SWF row has 18 fields, got {len(fields)}")
            try:
                submit, run, procs, requested_procs, requested_s = (
                    float(fields[1]),
                    float(fields[3]),
                    int(fields[4]),
                    int(fields[7]),
                    float(fields[8]),
                )
            except ValueError:
                raise SpecError(f"{path}:{line_no}: SWF fields must be numbers") from None
            procs = procs if procs > 0 else requested_procs
            if run <= 0 or procs <= 0:
                continue  # cancelled before start, or unknown size: nothing to schedule
            jobs.append(
                SchedJob(
                    job_id=f"{path.stem}-{fields[0]}",
                    submit_s=submit,
                    gpus=0,
                    cpu_nodes=math.ceil(procs / procs_per_node),
                    runtime_s={CPU_TYPE: run},
                    kind="hpc",
                    estimate_s=requested_s if requested_s > 0 else None,
                    queue="hpc",
                )
            )
            if limit and len(jobs) >= limit:
                break
    return jobs
