"""The device table: a family resolves to a device type and collective backend, never by vendor code."""

import pytest
import torch

from suanli.runtime.devices import backend_for_family, detect_backend, resolve_backend, torch_device
from suanli.spec import CATALOG, SpecError


def test_cpu_trains_with_gloo() -> None:
    cpu = backend_for_family("cpu")
    assert (cpu.device_type, cpu.collective_backend) == ("cpu", "gloo")
    assert torch_device(cpu, 3) == torch.device("cpu")


@pytest.mark.parametrize(
    ("family", "device_type", "collective"),
    [
        ("nvidia", "cuda", "nccl"),
        ("ascend", "npu", "hccl"),
        ("moore-threads", "musa", "mccl"),
        ("cambricon", "mlu", "cncl"),
    ],
)
def test_accelerator_families_map_to_their_stack(family: str, device_type: str, collective: str) -> None:
    backend = backend_for_family(family)
    assert (backend.device_type, backend.collective_backend) == (device_type, collective)


def test_in_tree_accelerators_are_indexed_by_local_rank() -> None:
    # out-of-tree types (npu, musa, mlu) exist only once their module has registered them
    assert torch_device(backend_for_family("nvidia"), 1) == torch.device("cuda", 1)
    assert torch_device(backend_for_family("intel-gpu"), 2) == torch.device("xpu", 2)


def test_every_backend_family_is_a_catalog_family_or_cpu() -> None:
    catalog_families = {accelerator.family for accelerator in CATALOG.accelerators}
    assert set(CATALOG.device_backends) - catalog_families <= {"cpu", "intel-gpu"}


def test_this_machine_is_detected_through_torch_accelerator() -> None:
    expected = torch.accelerator.current_accelerator()
    detected = detect_backend()
    assert detected.device_type == (expected.type if expected is not None else "cpu")


def test_unknown_family_and_missing_plugin_are_one_line_errors() -> None:
    with pytest.raises(SpecError, match="no device backend; known:"):
        backend_for_family("abacus")
    with pytest.raises(SpecError, match="torch_npu"):
        resolve_backend("ascend")
