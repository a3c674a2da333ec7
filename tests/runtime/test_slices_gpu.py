"""With a GPU: a sliced job really sees only its slice. Skipped where there is no CUDA device (MIG
cases also need MIG instances already created: nothing here changes a GPU's MIG mode)."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import torch

from suanli.runtime.fence import apply_fence
from suanli.runtime.slices import parse_smi_list
from suanli.service.executors.base import Placement, Run
from suanli.service.executors.local import LocalExecutor
from suanli.spec import CATALOG, JobSpec
from tests.service.conftest import wait_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROBE = (
    f'{shlex.quote(sys.executable)} -c "import torch; p = torch.cuda.get_device_properties(0);'
    ' print(torch.cuda.device_count(), p.total_memory)"'
)


def _mig_devices():
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return parse_smi_list(listing)


def test_the_fence_stops_allocations_beyond_the_slice():
    device = torch.device("cuda", 0)
    apply_fence(device, {"SUANLI_SLICE_MEMORY_MB": "1024", "SUANLI_SLICE_MODE": "timeslice"})
    try:
        torch.empty(512 * 2**20, dtype=torch.uint8, device=device)
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(2 * 2**30, dtype=torch.uint8, device=device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def test_a_mig_job_sees_one_device_of_its_profiles_memory(tmp_path):
    devices = _mig_devices()
    if not devices:
        pytest.skip("no MIG instances on this GPU")
    name, profile = torch.cuda.get_device_name(0).lower(), devices[0].profile
    accel = next(
        (
            a.slug
            for a in CATALOG.accelerators
            if a.slug.split("-")[0] in name and (m := CATALOG.sharing(a.slug).mig) and m.profile(profile)
        ),
        None,
    )
    if accel is None:
        pytest.skip(f"{name} with {profile} is not a MIG GPU of the catalog")
    spec = JobSpec.model_validate({"name": "probe", "run": PROBE, "sharing": {"mig": profile}})
    run = Run(1, 0, spec, Placement("gpu", 1, 1, accel, 1), tmp_path / "run", PROBE)
    executor = LocalExecutor()
    run.engine_id = executor.submit(run)
    status = wait_for(lambda: (s := executor.poll(run)).state not in {"pending", "running"} and s, 120)
    assert status.state == "succeeded", executor.logs(run)
    count, total = executor.logs(run).split()[-2:]
    memory_gb = CATALOG.sharing(accel).mig.profile(profile).memory_gb
    assert int(count) == 1 and int(total) <= memory_gb * 1.0e9 * 1.08
