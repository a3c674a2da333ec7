"""The node-side slice helper (`nvidia-smi -L` parsing, MIG claims) and the runtime's memory fence."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from suanli.runtime.fence import SliceExceeded, apply_fence, fence_from_env, memory_fraction
from suanli.runtime.slices import MigDevice, claim_mig, parse_smi_list
from suanli.sched.launch import launch_env, slice_grant
from suanli.spec import CATALOG
from suanli.spec.errors import ExecutorError
from suanli.spec.job import Sharing

SMI_LIST = """GPU 0: NVIDIA H200 (UUID: GPU-11111111-2222-3333-4444-555555555555)
  MIG 3g.71gb     Device  0: (UUID: MIG-0a0a0a0a-0000-5000-8000-00000000000a)
  MIG 1g.18gb     Device  1: (UUID: MIG-0b0b0b0b-0000-5000-8000-00000000000b)
GPU 1: NVIDIA H200 (UUID: GPU-66666666-7777-8888-9999-000000000000)
  MIG 1g.18gb     Device  0: (UUID: MIG-0c0c0c0c-0000-5000-8000-00000000000c)
"""


def test_parse_smi_list_reads_gpu_profile_and_uuid():
    assert parse_smi_list(SMI_LIST) == [
        MigDevice(0, "3g.71gb", "MIG-0a0a0a0a-0000-5000-8000-00000000000a"),
        MigDevice(0, "1g.18gb", "MIG-0b0b0b0b-0000-5000-8000-00000000000b"),
        MigDevice(1, "1g.18gb", "MIG-0c0c0c0c-0000-5000-8000-00000000000c"),
    ]
    assert parse_smi_list("GPU 0: NVIDIA L40S (UUID: GPU-aa)\n") == []


def test_claims_are_exclusive_while_the_owner_lives_and_free_after(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        mine = claim_mig("1g.18gb", 1, sleeper.pid, tmp_path, list_devices=SMI_LIST)
        other = claim_mig("1g.18gb", 1, os.getpid(), tmp_path, list_devices=SMI_LIST)
        assert mine != other
        with pytest.raises(ExecutorError, match=r"MIG 1g.18gb: 1 instance\(s\) wanted, 0 free"):
            claim_mig("1g.18gb", 1, os.getpid(), tmp_path, list_devices=SMI_LIST)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert claim_mig("1g.18gb", 1, os.getpid(), tmp_path, list_devices=SMI_LIST) == mine  # stale claim
    with pytest.raises(ExecutorError, match=r"MIG 3g.71gb: 2 instance\(s\) wanted, 1 free"):
        claim_mig("3g.71gb", 2, os.getpid(), tmp_path, list_devices=SMI_LIST)
    assert not (tmp_path / "MIG-0a0a0a0a-0000-5000-8000-00000000000a").exists()  # no half claim kept


MIG_GPUS = [a.slug for a in CATALOG.accelerators if CATALOG.sharing(a.slug).mig]


@given(st.sampled_from(MIG_GPUS), st.data())
def test_no_grant_exceeds_its_slice_of_memory(gpu, data):
    """A MIG grant's memory is its profile's; an MPS or time-slice grant's is its fraction of the
    device; the pinned-memory limit and the runtime fence never exceed it."""
    accel = CATALOG.accelerator(gpu)
    profiles = CATALOG.sharing(gpu).mig.profiles
    profile = data.draw(st.sampled_from(profiles))
    grant = slice_grant(Sharing(mode="mig", mig_profile=profile.name), gpu, 1)
    assert grant.memory_mb <= profile.memory_gb * 1024 <= accel.memory_gb * 1024
    fraction = data.draw(st.floats(0.01, 1.0))
    for mode in ("fraction", "timeslice"):
        share = slice_grant(Sharing(mode=mode, memory_fraction=fraction), gpu, 1)
        assert share.memory_mb <= fraction * accel.memory_gb * 1024
        env = launch_env(share)
        fence = fence_from_env(env)
        assert fence.limit_bytes == share.memory_mb * 1024**2
        if mode == "fraction":
            assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={share.memory_mb}M"


def test_fence_stops_a_job_over_its_slice_with_one_line():
    fence = fence_from_env({"SUANLI_SLICE_MEMORY_MB": "10240", "SUANLI_MIG_PROFILE": "1g.10gb"})
    fence.check(10240 * 1024**2)
    with pytest.raises(SliceExceeded, match=r"holds 12,288 MiB .* over its 1g.10gb slice of 10,240 MiB"):
        fence.check(12 * 1024**3)
    assert fence_from_env({}) is None
    assert memory_fraction(20 * 1024**3, 80 * 1024**3) == 0.25
    assert memory_fraction(90 * 1024**3, 80 * 1024**3) == 1.0
    assert apply_fence(torch.device("cpu"), {"SUANLI_SLICE_MEMORY_MB": "1"}).limit_bytes == 1024**2
