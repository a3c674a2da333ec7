"""Staging: copy a training state into one pre-allocated, reusable host buffer.

Tensors are copied (never aliased), so the optimizer may update the live tensors as soon as the
copy is done; everything after it works on the copy. The copy itself may run in the background
while the next forward and backward pass run (they read the parameters, they do not change them).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed.tensor import DTensor

ALIGN_BYTES = 64


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor of the state lives inside the flat staging buffer."""

    path: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Snapshot:
    """A staged state: tensor entries in a flat byte buffer plus the pickled non-tensor leaves."""

    entries: tuple[TensorEntry, ...]
    objects: dict[str, Any]
    skeleton: Any
    nbytes: int

    def to_meta_bytes(self) -> bytes:
        return pickle.dumps((self.entries, self.objects, self.skeleton))

    @classmethod
    def from_meta_bytes(cls, meta: bytes) -> Snapshot:
        entries, objects, skeleton = pickle.loads(meta)
        nbytes = max((e.offset + e.nbytes for e in entries), default=0)
        return cls(entries, objects, skeleton, nbytes)

    def shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {e.path: (e.shape, e.dtype) for e in self.entries}


@dataclass(frozen=True)
class _Tensor:
    path: str


@dataclass(frozen=True)
class _Object:
    path: str


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a tensor this rank holds (the local shard of a DTensor)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def flatten(state: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """Split a nested state into a skeleton, its tensors and its other leaves, keyed by dotted path."""
    tensors: dict[str, torch.Tensor] = {}
    objects: dict[str, Any] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value
            return _Tensor(path)
        if isinstance(value, dict):
            return {key: walk(item, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
        if isinstance(value, list | tuple):
            items = [walk(item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        objects[path] = value
        return _Object(path)

    return walk(state, prefix), tensors, objects


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor], objects: dict[str, Any]) -> Any:
    """Inverse of `flatten`."""
    if isinstance(skeleton, _Tensor):
        return tensors[skeleton.path]
    if isinstance(skeleton, _Object):
        return objects[skeleton.path]
    if isinstance(skeleton, dict):
        return {key: unflatten(item, tensors, objects) for key, item in skeleton.items()}
    if isinstance(skeleton, list | tuple):
        items = [unflatten(item, tensors, objects) for item in skeleton]
        return items if isinstance(skeleton, list) else tuple(items)
    raise TypeError(f"unknown skeleton node {skeleton!r}")


def layout(tensors: dict[str, torch.Tensor]) -> tuple[tuple[TensorEntry, ...], int]:
    """Offsets of each tensor's local bytes in a flat buffer, each aligned to 64 bytes."""
    entries = []
    offset = 0
    for path, tensor in tensors.items():
        local = local_tensor(tensor)
        nbytes = local.numel() * local.element_size()
        entries.append(TensorEntry(path, local.dtype, tuple(local.shape), offset, nbytes))
        offset += -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES
    return tuple(entries), offset


def accelerator_present() -> bool:
    return torch.accelerator.is_available()


def host_buffer(nbytes: int) -> torch.Tensor:
    """A private host buffer, pinned when an accelerator is present (so device copies run at DMA speed)."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=accelerator_present())


def view(buffer: torch.Tensor, entry: TensorEntry) -> torch.Tensor:
    """The tensor `entry` describes, sharing `buffer`'s memory.

    Built with `frombuffer` so its storage is exactly its own bytes: DCP clones any tensor whose
    storage is larger than itself, which would double the memory of a save.
    """
    if entry.nbytes == 0:
        return torch.empty(entry.shape, dtype=entry.dtype)
    count = entry.nbytes // torch.empty((), dtype=entry.dtype).element_size()
    raw = buffer.numpy().data.cast("B")
    return torch.frombuffer(raw, dtype=entry.dtype, count=count, offset=entry.offset).view(entry.shape)


def staged_state(snapshot: Snapshot, buffer: torch.Tensor, live: dict[str, torch.Tensor]) -> Any:
    """The staged copy as a nested state, DTensors re-wrapped around their staged local shards."""
    tensors = {}
    for entry in snapshot.entries:
        copy = view(buffer, entry)
        original = live[entry.path]
        if isinstance(original, DTensor):
            copy = DTensor.from_local(
                copy,
                original.device_mesh,
                original.placements,
                run_check=False,
                shape=original.shape,
                stride=original.stride(),
            )
        tensors[entry.path] = copy
    return unflatten(snapshot.skeleton, tensors, snapshot.objects)


class HostBuffer:
    """One pre-allocated host buffer reused by every save; reallocated only when the state's size changes."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def __call__(self, nbytes: int) -> torch.Tensor:
        if self._buffer is None or self._buffer.numel() != nbytes:
            self._buffer = host_buffer(nbytes)
        return self._buffer


def prepare(state: Any) -> tuple[Snapshot, dict[str, torch.Tensor]]:
    """Lay `state` out in a flat buffer and copy its non-tensor leaves.

    Returns the snapshot's description and the live tensors (by path); the tensors are not copied
    yet (`copy_tensors`, into a buffer of `snapshot.nbytes`).
    """
    skeleton, tensors, objects = flatten(state)
    entries, nbytes = layout(tensors)
    copied_objects = pickle.loads(pickle.dumps(objects))
    return Snapshot(entries, copied_objects, skeleton, nbytes), tensors


_side_streams: dict[torch.device, torch.Stream] = {}


def copy_tensors(
    snapshot: Snapshot,
    buffer: torch.Tensor,
    tensors: dict[str, torch.Tensor],
    ready: torch.Event | None = None,
) -> None:
    """Copy the live tensors into the buffer; returns when the bytes are there.

    Device tensors are copied on a side stream that first waits for `ready` (recorded on the
    training stream when the save was asked for), so the copy overlaps the compute that follows
    instead of queueing behind it (the CheckFreq / Gemini snapshot).
    """
    device = next(
        (local_tensor(t).device for t in tensors.values() if local_tensor(t).device.type != "cpu"), None
    )
    if device is None:
        for entry in snapshot.entries:
            view(buffer, entry).copy_(local_tensor(tensors[entry.path]))
        return
    if device not in _side_streams:
        _side_streams[device] = torch.Stream(device=device)
    stream = _side_streams[device]
    with stream:
        if ready is not None:
            stream.wait_event(ready)
        for entry in snapshot.entries:
            view(buffer, entry).copy_(local_tensor(tensors[entry.path]), non_blocking=True)
    stream.synchronize()


def stage(state: Any, acquire: Callable[[int], torch.Tensor]) -> tuple[Snapshot, torch.Tensor, dict]:
    """`prepare`, a buffer from `acquire(nbytes)` and `copy_tensors` in one blocking call."""
    snapshot, tensors = prepare(state)
    buffer = acquire(snapshot.nbytes)
    copy_tensors(snapshot, buffer, tensors)
    return snapshot, buffer, tensors
