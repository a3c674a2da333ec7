"""Sia workloads (Jayaram Subramanya et al., SOSP'23) with Sia's measured per-GPU-type profiles.

A workload row is `name,time,application,num_replicas,batch_size` (a rigid job: fixed GPUs and
batch size). A job's isolated run time on a GPU type is computed the way the Sia artifact's
simulator advances a rigid job: per-step time from the measured `placements-*.csv` (same
placement, interpolated in local batch size) or `scalability-*.csv` (interpolated in nodes, GPUs and
local batch size), gradient accumulation when the local batch exceeds the measured maximum,
statistical efficiency per epoch from the `validation-*.csv` gradient statistics (Pollux's gain
(σ²+μ²)/(σ²/s+μ²), s = batch / initial batch), the app's epoch budget, and Sia's calibration
slowdown. The Gavel throughput table gets the same per-type steps/s, as in the artifact.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import LinearNDInterpolator

from suanli.sched.job import Elastic, SchedJob
from suanli.spec.datasets import dataset_path, read_text
from suanli.spec.errors import DatasetError, SpecError

SIA = "traces/sia"  # under datasets/
# Sia profile suffix → (accelerator slug in the Suanli cluster, GPUs per node of the profiled node).
PROFILED_TYPES = {"aws": ("t4", 4), "rtx": ("rtx-2080ti", 8), "dgx-ext": ("a100-sxm-40gb", 8)}
# Per app: (epochs to run, calibration slowdown, checkpoint-restore seconds) — Sia's
# applications.py `max_epochs`, simulator_config.py `SLOWDOWNS`, applications.py `rescale_time`.
APPS = {
    "bert": (2, 1.2, 120.0),
    "cifar10": (100, 1.8, 50.0),
    "deepspeech2": (80, 1.2, 25.0),
    "imagenet": (90, 1.2, 250.0),
    "ncf": (10, 1.5, 15.0),
    "yolov3": (50, 1.2, 80.0),
}


def _read(path: Path) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(io.StringIO(read_text(path))))
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


@dataclass
class AppProfile:
    app: str
    placements: dict[str, np.ndarray]
    scalability: dict[str, np.ndarray]
    validation: dict[int, dict[str, np.ndarray]]
    interpolator: LinearNDInterpolator | None = None

    @classmethod
    def load(cls, app: str, suffix: str) -> AppProfile:
        folder = dataset_path(f"{SIA}/profiles/{app}")
        placements = _read(folder / f"placements-{suffix}.csv")
        ids = placements["placement"].astype(int)
        placements["num_nodes"] = np.array([len(str(p)) for p in ids], dtype=float)
        placements["num_replicas"] = np.array([sum(map(int, str(p))) for p in ids], dtype=float)
        validation = {int(p.stem.split("-")[1]): _read(p) for p in folder.glob("validation-*.csv")}
        return cls(
            app, placements, _read(folder / f"scalability-{suffix}.csv"), dict(sorted(validation.items()))
        )

    @property
    def init_batch_size(self) -> int:
        return min(self.validation)

    @property
    def max_batch_size(self) -> int:
        return max(self.validation)

    def max_local_bsz(self, placement: tuple[int, ...]) -> float:
        pid = _placement_id(placement)
        mask = self.placements["placement"] == pid
        if mask.any():
            return float(self.placements["local_bsz"][mask].max())
        sc = self.scalability
        mask = (sc["num_nodes"] >= len(placement)) & (sc["num_replicas"] >= sum(placement))
        return float(sc["local_bsz"][mask].max()) if mask.any() else float(self.placements["local_bsz"].max())

    def step_time_s(self, placement: tuple[int, ...], local_bsz: float) -> tuple[float, float] | None:
        """(step time, sync time) in seconds, or None outside the measured range."""
        pid = _placement_id(placement)
        p = self.placements
        mask = p["placement"] == pid
        if mask.any():
            bsz, step, sync = p["local_bsz"][mask], p["step_time"][mask], p["sync_time"][mask]
            order = np.argsort(bsz)
            bsz, step, sync = bsz[order], step[order], sync[order]
            if not bsz[0] <= local_bsz <= bsz[-1]:
                return None
            return float(np.interp(local_bsz, bsz, step)), float(np.interp(local_bsz, bsz, sync))
        value = self._scaling()([[min(len(placement), 16), sum(placement), local_bsz]])[0]
        return None if not np.all(np.isfinite(value)) else (float(value[0]), float(value[1]))

    def _scaling(self) -> LinearNDInterpolator:
        """Interpolator over (nodes, GPUs, local batch) of the placement means and scalability rows."""
        if self.interpolator is None:
            p, s = self.placements, self.scalability
            keys: dict[tuple[float, float, float], list[tuple[float, float]]] = {}
            for i in range(len(p["local_bsz"])):
                key = (p["num_nodes"][i], p["num_replicas"][i], p["local_bsz"][i])
                keys.setdefault(key, []).append((p["step_time"][i], p["sync_time"][i]))
            points = list(keys) + list(zip(s["num_nodes"], s["num_replicas"], s["local_bsz"], strict=True))
            values = [np.mean(v, axis=0) for v in keys.values()]
            values += list(zip(s["step_time"], s["sync_time"], strict=True))
            self.interpolator = LinearNDInterpolator(np.array(points), np.array(values))
        return self.interpolator

    def progress_at(self, epoch: int) -> float:
        if epoch == 0:
            return 0.0
        return min(float(v["progress"][epoch - 1]) for v in self.validation.values())

    def grad_stats(self, batch_size: float, epoch: int) -> tuple[float, float]:
        sizes = list(self.validation)
        batch_size = min(max(batch_size, sizes[0]), sizes[-1])
        lower = max(s for s in sizes if s <= batch_size)
        upper = min(s for s in sizes if s >= batch_size)
        lo, hi = self.validation[lower], self.validation[upper]
        if lower == upper:
            return float(lo["grad_sqr"][epoch]), float(lo["grad_var"][epoch])
        w = (batch_size - lower) / (upper - lower)
        sqr = (1 - w) * lo["grad_sqr"][epoch] + w * hi["grad_sqr"][epoch]
        var = (1 - w) * lo["grad_var"][epoch] + w * hi["grad_var"][epoch]
        return float(sqr), float(var)


@cache
def profile(app: str, suffix: str) -> AppProfile:
    return AppProfile.load(app, suffix)


def _placement_id(placement: tuple[int, ...]) -> int:
    rotation = min(placement[i:] + placement[:i] for i in range(len(placement)))
    return int("".join(map(str, rotation)))


def packed_placement(gpus: int, per_node: int) -> tuple[int, ...]:
    full, rest = divmod(gpus, per_node)
    return (per_node,) * full + ((rest,) if rest else ())


def rigid_run(
    app: str, suffix: str, gpus: int, batch_size: int, calibrated: bool = True
) -> tuple[float, float, float] | None:
    """(isolated run time in s, steps/s, share of an iteration spent in gradient sync) of a rigid job
    on Sia's profiled `suffix` nodes, packed on the fewest nodes; None when the profiles cannot run
    it (memory or measured range).
    `calibrated=False` drops Sia's real-vs-simulated slowdown (Pollux's simulator has none)."""
    max_epochs, slowdown, _ = APPS[app]
    slowdown = slowdown if calibrated else 1.0
    prof = profile(app, suffix)
    per_node = PROFILED_TYPES[suffix][1]
    placement = packed_placement(gpus, per_node)
    local = math.ceil(batch_size / gpus - 1e-8)
    accum = math.ceil(local / prof.max_local_bsz(placement) - 1e-8) - 1
    if gpus == 1 and batch_size > prof.init_batch_size:
        accum = max(1, accum)
    atomic = math.ceil(local / (accum + 1) - 1e-8)
    same_width = prof.placements["num_replicas"] == gpus
    if same_width.any():
        atomic = int(min(atomic, prof.placements["local_bsz"][same_width].max()))
    atomic = min(atomic, int(prof.max_batch_size / (gpus * (accum + 1))))
    times = prof.step_time_s(placement, atomic)
    if times is None or atomic < 1:
        return None
    step, sync = times
    iteration_s = (step + (step - sync) * accum) * slowdown
    total_batch = gpus * atomic * (accum + 1)
    scale = total_batch / prof.init_batch_size
    run_s = 0.0
    for epoch in range(max_epochs):
        sqr, var = prof.grad_stats(total_batch, epoch)
        gain = (var + sqr) / (var / scale + sqr)
        run_s += (prof.progress_at(epoch + 1) - prof.progress_at(epoch)) * iteration_s / gain
    return run_s, 1.0 / iteration_s, sync * slowdown / iteration_s


def workload_path(trace: str, workload: str | int) -> Path:
    """`--workload 3` → the copied Sia workload 3 of `trace`; anything else is a file path."""
    if isinstance(workload, int) or str(workload).isdigit():
        try:
            return dataset_path(f"{SIA}/workloads/{trace}/workload-{int(workload)}.csv")
        except DatasetError:
            available = _available(trace)
            raise SpecError(f"--workload: no {trace} workload {workload} (have {available})") from None
    path = Path(workload)
    if not path.exists():
        raise SpecError(f"--workload: file not found: {path}")
    return path


def _available(trace: str) -> str:
    try:
        folder = dataset_path(f"{SIA}/workloads/{trace}")
    except DatasetError:
        return "none"
    found = sorted(int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("workload-*.csv*"))
    return ", ".join(map(str, found)) or "none"


def elastic_shape(app: str) -> dict[str, Any]:
    """How Sia's simulator runs a workload row as an adaptive job (cluster.py
    `get_sia_multi_job_info`): from 1 GPU up to 64 (the type's pool and the app's largest batch cap
    it further), choosing its batch; NCF stays on one GPU. Its work is the app's epoch budget in
    steps at the initial batch."""
    steps = profile(app, "aws").progress_at(APPS[app][0])
    return {"gpus_max": 1 if app == "ncf" else 64, "elastic": Elastic(app, steps)}


def load_sia_workload(path: Path | str, calibrated: bool = True, elastic: bool = False) -> list[SchedJob]:
    """Jobs of a Sia workload CSV; a malformed row is an error naming file and line. `elastic`: each
    job may be resized (`elastic_shape`); its GPU count and batch from the row are what a policy that
    does not resize runs it with."""
    path = Path(path)
    jobs = []
    with io.StringIO(read_text(path)) as handle:
        reader = csv.DictReader(handle)
        missing = {"name", "time", "application", "num_replicas", "batch_size"} - set(reader.fieldnames or [])
        if missing:
            raise SpecError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                app, gpus, batch = row["application"], int(row["num_replicas"]), int(row["batch_size"])
                submit_s = float(row["time"])
            except (TypeError, ValueError):
                raise SpecError(f"{path}:{line}: time, num_replicas and batch_size must be numbers") from None
            if app not in APPS:
                raise SpecError(
                    f"{path}:{line}: application {app!r} has no Sia profile; one of {sorted(APPS)}"
                )
            if gpus < 1 or batch < 1:
                raise SpecError(f"{path}:{line}: num_replicas and batch_size must be >= 1")
            shape = elastic_shape(app) if elastic else {}
            gpus = min(gpus, shape.get("gpus_max", gpus))
            runtime, throughput, comm_share = {}, {}, {}
            for suffix, (accel, _) in PROFILED_TYPES.items():
                run = rigid_run(app, suffix, gpus, batch, calibrated)
                if run is not None:
                    runtime[accel], throughput[accel], comm_share[accel] = run
            if not runtime:
                raise SpecError(
                    f"{path}:{line}: {app} with {gpus} GPUs and batch {batch} fits no profiled GPU"
                )
            jobs.append(
                SchedJob(
                    job_id=row["name"],
                    submit_s=submit_s,
                    gpus=gpus,
                    runtime_s=runtime,
                    throughput=throughput,
                    restart_overhead_s=APPS[app][2],
                    checkpoint_s=APPS[app][2] / 2,  # Sia's rescale_time is a save plus a restore
                    # an elastic job's measured goodput already depends on its actual placement
                    comm_share={} if elastic else comm_share,
                    app=app,
                    **shape,
                )
            )
    return jobs
