"""A sliced job's run as each engine starts it: the launch environment of `suanli.sched.launch`, and
the node helper (`suanli.runtime.slices`) run first in the job where the engine does not choose the
slice itself (Slurm picks MIG instances from the GRES request; it does not start MPS daemons)."""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys

from suanli.sched.launch import SliceGrant, launch_env, ray_num_gpus, slice_grant
from suanli.service.executors.base import Run

HELPER_MODES = {"local": {"mig", "fraction"}, "ray": {"mig", "fraction"}, "slurm": {"fraction"}}


def gpus_per_node(run: Run) -> int:
    placement = run.placement
    return math.ceil(placement.accelerators / placement.nodes) if placement.accelerators else 0


def grant_of(run: Run) -> SliceGrant | None:
    return slice_grant(run.spec.sharing, run.placement.accelerator, gpus_per_node(run))


def node_prelude(python: str = sys.executable) -> str:
    """Shell that exports what the node helper prints, failing the job (status 3) when it cannot."""
    return f'_suanli_slice="$({shlex.quote(python)} -m suanli.runtime.slices env)" && eval "$_suanli_slice"'


def sliced_run(run: Run, engine: str) -> Run:
    """`run` with its slice applied: launch environment, and the node helper before the command."""
    grant = grant_of(run)
    if grant is None:
        return run
    command = f"{node_prelude()} && {run.command}" if grant.mode in HELPER_MODES[engine] else run.command
    return dataclasses.replace(run, command=command, extra_env={**run.extra_env, **launch_env(grant)})


def ray_gpus(run: Run) -> float:
    """Ray's `num_gpus` for the entrypoint: whole GPUs per node, or the slice's fraction of them."""
    grant = grant_of(run)
    return ray_num_gpus(grant) if grant else float(gpus_per_node(run))
