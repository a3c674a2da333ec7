"""What a launcher applies to a sliced job, as pure functions: the environment the job starts with,
the Slurm GRES request, and the Ray GPU count. Every executor calls these; nothing here touches a GPU.

- MIG: the job sees only its instances (`CUDA_VISIBLE_DEVICES=MIG-<uuid>`, chosen on the node by
  `suanli.runtime.slices`, or by Slurm from `--gres=gpu:<profile>:N`).
- MPS (`fraction`): `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` caps the client's SMs and
  `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT` its device memory (NVIDIA MPS documentation, "Appendix:
  Environment Variables"); Slurm's `gres/mps` with 100 shares per GPU gives the same percentage.
- time-slicing: no driver limit exists; Slurm's `gres/shard` counts it, and the runtime's fence
  (`suanli.runtime.fence`, `torch.cuda.set_per_process_memory_fraction`) is the only memory limit.
All modes pass the slice's memory (`SUANLI_SLICE_MEMORY_MB`) for that fence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suanli.sched.fractional import FULL_MILLI, mig_profile, share_milli
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SpecError
from suanli.spec.job import Sharing

MPS_SHARES_PER_GPU = 100  # the `Count=100` per GPU a site gives gres/mps and gres/shard (docs/sharing.md)


@dataclass(frozen=True)
class SliceGrant:
    """One sliced job on one node: its mode, the slice of each of its `gpus_per_node` devices."""

    mode: str  # mig, fraction (MPS) or timeslice
    accelerator: str
    gpus_per_node: int
    memory_mb: int  # device memory the job may use on each of its devices
    milli: int  # the scheduler's share of one device (1/1000)
    profile: str | None = None  # MIG profile
    core_percent: int | None = None  # MPS active thread percentage


def slice_grant(sharing: Sharing, accelerator: str | None, gpus_per_node: int) -> SliceGrant | None:
    """The grant for a job's `sharing` on `accelerator`; None for a whole-device job. SpecError with
    one line when the accelerator cannot enforce the mode (from the sharing catalog)."""
    if sharing.mode == "exclusive" or accelerator is None:
        return None
    model = CATALOG.sharing(accelerator, field="resources.accelerators")
    if sharing.mode not in model.modes():
        raise SpecError(f"sharing.mode: {model.refusal(sharing.mode)}")
    accel = CATALOG.accelerator(accelerator)
    milli = share_milli(sharing, accel.slug)
    if sharing.mode == "mig":
        profile = mig_profile(accel.slug, sharing.mig_profile or "")
        return SliceGrant(
            "mig", accel.slug, gpus_per_node, int(profile.memory_gb * 1024), milli, profile.name
        )
    if accel.memory_gb is None:
        raise SpecError(f"sharing: the catalog does not know the memory of {accel.slug}, so no slice of it")
    if sharing.mode == "fraction" and gpus_per_node > 1:
        raise SpecError("sharing: an MPS share spans one GPU per node (Slurm's gres/mps has the same rule)")
    memory = sharing.memory_fraction or sharing.core_fraction or 1.0
    core = sharing.core_fraction or sharing.memory_fraction or 1.0
    return SliceGrant(
        sharing.mode,
        accel.slug,
        gpus_per_node,
        math.floor(memory * accel.memory_gb * 1024),
        milli,
        core_percent=max(1, round(core * 100)) if sharing.mode == "fraction" else None,
    )


def launch_env(grant: SliceGrant, mig_devices: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of one sliced job on one node; `mig_devices` are the MIG UUIDs it was given
    (empty when the node helper or Slurm chooses them)."""
    env = {
        "SUANLI_SLICE_MODE": grant.mode,
        "SUANLI_SLICE_MEMORY_MB": str(grant.memory_mb),
        "SUANLI_SLICE_GPUS": str(grant.gpus_per_node),
    }
    if grant.mode == "mig":
        env["SUANLI_MIG_PROFILE"] = grant.profile or ""
        if mig_devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(mig_devices)
    elif grant.mode == "fraction":
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(grant.core_percent)
        # the client's device ordinals: each GPU it sees gets the same limit
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = ",".join(
            f"{i}={grant.memory_mb}M" for i in range(grant.gpus_per_node)
        )
    return env


def slurm_gres(grant: SliceGrant) -> str:
    """The `--gres` of a sliced job, so that the site's own Slurm (gres.conf with AutoDetect=nvml for
    MIG, `Name=mps Count=100` / `Name=shard Count=100` per GPU) enforces it (Slurm gres.html)."""
    if grant.mode == "mig":
        return f"gpu:{grant.profile}:{grant.gpus_per_node}"
    shares = math.ceil(grant.milli * MPS_SHARES_PER_GPU / FULL_MILLI)
    return f"mps:{shares}" if grant.mode == "fraction" else f"shard:{shares * grant.gpus_per_node}"


def ray_num_gpus(grant: SliceGrant) -> float:
    """Ray's fractional `num_gpus` for the job's entrypoint: the scheduler's share of each device."""
    return grant.gpus_per_node * grant.milli / FULL_MILLI
