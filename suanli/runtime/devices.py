"""Accelerator families as data: which PyTorch device, module and collective backend each one uses.

The table lives in `suanli/catalog/device_backends.yaml`; the training loop asks this module for a
`DeviceBackend` and never names a vendor. Out-of-tree devices (torch_npu, torch_musa, torch_mlu, ...)
register themselves when their module is imported, after which `torch.accelerator` reports them.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

from suanli.spec.catalog import CATALOG
from suanli.spec.device_backend import DeviceBackend
from suanli.spec.errors import SpecError

CPU_FAMILY = "cpu"


def backend_for_family(family: str) -> DeviceBackend:
    """The backend of an accelerator family; a family the table does not know is a SpecError."""
    table = CATALOG.device_backends
    if family not in table:
        raise SpecError(
            f"accelerator family {family!r} has no device backend; known: {', '.join(sorted(table))}"
        )
    return table[family]


def _import_device_module(backend: DeviceBackend) -> None:
    if backend.module is None:
        return
    try:
        importlib.import_module(backend.module)
    except ImportError as exc:
        raise SpecError(
            f"family {backend.family!r} needs the module {backend.module!r} ({exc}); install the vendor's "
            "PyTorch plug-in"
        ) from None


def _installed_device_modules() -> list[DeviceBackend]:
    found = []
    for backend in CATALOG.device_backends.values():
        if backend.module is None:
            continue
        try:
            if importlib.util.find_spec(backend.module) is not None:
                found.append(backend)
        except ModuleNotFoundError:  # a dotted name whose parent package is absent
            continue
    return found


def detect_backend() -> DeviceBackend:
    """The backend of the accelerator this process sees, through `torch.accelerator`; CPU if none."""
    for backend in _installed_device_modules():
        _import_device_module(backend)
    if torch.accelerator.is_available():
        accelerator = torch.accelerator.current_accelerator()
        assert accelerator is not None
        for backend in CATALOG.device_backends.values():
            if backend.device_type == accelerator.type:
                return backend
        raise SpecError(f"torch reports a {accelerator.type!r} accelerator that device_backends.yaml lacks")
    return backend_for_family(CPU_FAMILY)


def resolve_backend(family: str | None) -> DeviceBackend:
    """The named family's backend (importing its module), or the detected one when `family` is None."""
    if family is None:
        return detect_backend()
    backend = backend_for_family(family)
    _import_device_module(backend)
    return backend


def torch_device(backend: DeviceBackend, local_rank: int) -> torch.device:
    """The device a process drives: accelerators are indexed by local rank, the CPU is one device."""
    if backend.device_type == "cpu":
        return torch.device("cpu")
    return torch.device(backend.device_type, local_rank)


def bind_device(backend: DeviceBackend, local_rank: int) -> torch.device:
    """Make `local_rank`'s device current for this process and return it."""
    device = torch_device(backend, local_rank)
    if device.type != "cpu":
        torch.accelerator.set_device_index(device.index)
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock step times are true ones."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def check_present(backend: DeviceBackend, processes: int) -> None:
    """Refuse, in one line, a backend whose devices or collective library this machine lacks."""
    import torch.distributed as dist

    if backend.device_type != "cpu":
        present = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
        if present is None or present.type != backend.device_type:
            seen = present.type if present is not None else "no accelerator"
            raise SpecError(
                f"accelerator family {backend.family!r} runs on {backend.device_type!r} devices; this "
                f"machine has {seen} (run on a {backend.family} node, or leave accelerator unset)"
            )
        count = torch.accelerator.device_count()
        if count < processes:
            raise SpecError(
                f"{processes} processes need {processes} {backend.device_type} devices; this node has {count}"
            )
    if processes > 1 and not dist.is_backend_available(backend.collective_backend):
        raise SpecError(
            f"collective backend {backend.collective_backend!r} (family {backend.family!r}) is not "
            "built into this PyTorch"
        )
