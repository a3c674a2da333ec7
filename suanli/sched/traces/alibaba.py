"""Alibaba GPU cluster trace v2023 (Weng et al., "FGD", ATC'23; `openb_pod_list_*.csv`): pods with
`num_gpu`, `gpu_milli` (a share of one GPU when < 1000), an optional `gpu_spec` ("T4|V100M16"),
creation and deletion times. Pods that never ran (no deletion time) are skipped."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from suanli.sched.job import SchedJob
from suanli.spec.datasets import read_text
from suanli.spec.errors import SpecError
from suanli.spec.job import Sharing


def load_alibaba_pods(
    path: Path | str, type_map: dict[str, str], limit: int | None = None, gpu_only: bool = True
) -> list[SchedJob]:
    """`type_map` maps trace GPU models (T4, P100, V100M16, ...) to cluster accelerator slugs; a pod
    without a `gpu_spec` may run on any mapped type."""
    path = Path(path).absolute()
    jobs: list[SchedJob] = []
    with io.StringIO(read_text(path)) as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"])
                created = float(row["creation_time"])
                deleted = float(row["deletion_time"]) if row["deletion_time"] else None
            except (KeyError, ValueError):
                raise SpecError(
                    f"{path}:{line}: needs num_gpu, gpu_milli, creation_time, deletion_time"
                ) from None
            if deleted is None or deleted <= created or (gpu_only and gpus == 0):
                continue
            models = [m for m in (row.get("gpu_spec") or "").split("|") if m] or list(type_map)
            types = {type_map[m] for m in models if m in type_map}
            if not types:
                continue
            sharing = Sharing(mode="fraction", core_fraction=milli / 1000) if 0 < milli < 1000 else Sharing()
            jobs.append(
                SchedJob(
                    job_id=row["name"],
                    submit_s=created,
                    gpus=max(1, gpus),
                    runtime_s=dict.fromkeys(sorted(types), deleted - created),
                    kind="inference" if row.get("qos") == "LS" else "training",
                    sharing=sharing,
                )
            )
            if limit and len(jobs) >= limit:
                break
    return jobs
