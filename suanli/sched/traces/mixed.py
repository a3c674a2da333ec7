"""Mixed AI + HPC workloads. No public trace mixes the two, so this is our own construction: HPC
jobs from an SWF log are moved into the AI workload's submission window and run as rigid,
non-preemptible `hpc` gangs on GPUs (one GPU per `procs_per_gpu` processors), such that `hpc_share`
of all jobs are HPC jobs. Sweep `hpc_share` and say so when quoting results."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from suanli.sched.job import SchedJob
from suanli.spec.errors import SpecError


def mix_workload(
    ai_jobs: list[SchedJob],
    hpc_jobs: list[SchedJob],
    hpc_share: float,
    accel_types: list[str],
    procs_per_gpu: int = 16,
    max_gpus: int = 64,
    seed: int = 0,
) -> list[SchedJob]:
    if not 0.0 <= hpc_share < 1.0:
        raise SpecError(f"--hpc-share: must be in [0, 1), got {hpc_share}")
    wanted = round(hpc_share / (1.0 - hpc_share) * len(ai_jobs))
    if wanted == 0 or not hpc_jobs or not ai_jobs:
        return list(ai_jobs)
    rng = random.Random(seed)
    picked = rng.sample(hpc_jobs, min(wanted, len(hpc_jobs)))
    window = max(j.submit_s for j in ai_jobs) - min(j.submit_s for j in ai_jobs)
    start = min(j.submit_s for j in ai_jobs)
    mixed = list(ai_jobs)
    for job in picked:
        runtime = next(iter(job.runtime_s.values()))
        gpus = min(max_gpus, max(1, math.ceil(job.cpu_nodes / procs_per_gpu)))
        mixed.append(
            replace(
                job,
                job_id=f"hpc-{job.job_id}",
                submit_s=start + rng.random() * window,
                gpus=gpus,
                cpu_nodes=0,
                runtime_s=dict.fromkeys(accel_types, runtime),
            )
        )
    return sorted(mixed, key=lambda j: (j.submit_s, j.job_id))
