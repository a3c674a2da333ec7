"""Gavel's throughput table (`simulation_throughputs.json`, stanford-futuredata/gavel): steps/s of
83 job types at scale factors 1/2/4/8 on K80, P100 and V100, isolated (`null`) and co-located."""

from __future__ import annotations

import json
from pathlib import Path

from suanli.spec.errors import SpecError

DEFAULT_PATH = Path("/work/shared/data/traces/gavel/simulation_throughputs.json")
GAVEL_TYPES = ("k80", "p100", "v100")


def load_gavel_table(path: Path | str = DEFAULT_PATH) -> dict[tuple[str, int], dict[str, float]]:
    """{(job type, scale factor): {gpu type: isolated steps/s}}."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"gavel throughput table: file not found: {path}")
    raw = json.loads(path.read_text())
    table: dict[tuple[str, int], dict[str, float]] = {}
    for gpu in GAVEL_TYPES:
        for key, entry in raw.get(gpu, {}).items():
            name, scale = key.strip("()").rsplit(",", 1)
            table.setdefault((name.strip().strip("'"), int(scale)), {})[gpu] = float(entry["null"])
    return table


def colocated_throughput(path: Path | str, gpu: str, job: str, scale: int, other: str) -> tuple[float, float]:
    """(own, neighbour's) steps/s when `job` shares a GPU with `other` (both at `scale`)."""
    raw = json.loads(Path(path).read_text())
    entry = raw[gpu][f"('{job}', {scale})"][f"('{other}', {scale})"]
    return float(entry[0]), float(entry[1])
