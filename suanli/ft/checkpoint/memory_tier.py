"""The in-memory tier: snapshots held in shared memory owned by a per-node agent process.

The agent (`agent.py`) outlives the training processes, so a restarted worker finds its last
snapshot in RAM instead of on disk. Each owner (a global rank) has two slots per agent: one
holds the newest committed snapshot while the other is being overwritten, so a crash mid-write
never destroys the last good copy. A worker on the same node stages straight into a slot (the
staging copy *is* the memory tier); a peer on another node sends its replica over TCP (`put`).

Wire format: an 8-byte little-endian length, a JSON header, then raw payload bytes if any.
"""

from __future__ import annotations

import base64
import json
import mmap
import os
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from suanli.spec.io import atomic_write_text

if TYPE_CHECKING:  # the agent process never imports torch: it starts in a fraction of the time
    import torch

_LENGTH = struct.Struct("<Q")
CHUNK_BYTES = 8 << 20
SLOTS_PER_OWNER = 2
# Map a slot's pages in one call instead of faulting them in 4 KiB at a time while a replica streams
# through: half the agent's CPU time per replica received (0.045 vs 0.09 s per 128 MiB, this machine).
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # Linux only


class AgentUnavailable(ConnectionError):
    """The node agent is not running or not reachable."""


def send_message(sock: socket.socket, header: dict, *payloads: memoryview) -> None:
    body = json.dumps(header).encode()
    sock.sendall(_LENGTH.pack(len(body)) + body)
    for payload in payloads:
        sock.sendall(payload)


def _receive_exact(sock: socket.socket, target: memoryview) -> None:
    received = 0
    while received < target.nbytes:
        count = sock.recv_into(target[received : received + CHUNK_BYTES])
        if count == 0:
            raise ConnectionError("connection closed mid-transfer")
        received += count


def receive_message(sock: socket.socket) -> dict:
    length = bytearray(_LENGTH.size)
    _receive_exact(sock, memoryview(length))
    body = bytearray(_LENGTH.unpack(length)[0])
    _receive_exact(sock, memoryview(body))
    return json.loads(body)


def receive_bytes(sock: socket.socket, nbytes: int) -> bytes:
    data = bytearray(nbytes)
    _receive_exact(sock, memoryview(data))
    return bytes(data)


def as_bytes(buffer: torch.Tensor) -> memoryview:
    """A zero-copy byte view of a contiguous uint8 CPU tensor."""
    return buffer.numpy().data.cast("B")


# ---------------------------------------------------------------------------------------------
# Agent side


@dataclass
class Slot:
    path: Path
    size_bytes: int = 0
    step: int | None = None
    crc32: int | None = None
    meta: bytes = b""
    writing: bool = False


def _age_key(slot: Slot) -> int:
    """Orders slots oldest first; an empty slot is older than any snapshot."""
    return -1 if slot.step is None else slot.step


def _sidecar(slot_path: Path) -> Path:
    return slot_path.with_name(slot_path.name + ".json")


def _write_sidecar(slot: Slot) -> None:
    """Describe a sealed slot next to its bytes, so an agent restarted after a crash can adopt it."""
    record = {
        "step": slot.step,
        "crc32": slot.crc32,
        "size_bytes": slot.size_bytes,
        "meta": base64.b64encode(slot.meta).decode(),
    }
    atomic_write_text(_sidecar(slot.path), json.dumps(record))


@dataclass
class SlotTable:
    """Every slot this agent holds, by owner rank; the shared-memory files live under `folder`."""

    folder: Path
    slots: dict[int, list[Slot]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def adopt(cls, folder: Path) -> SlotTable:
        """The slots a previous agent of this node left in `folder` (it crashed), else an empty table.

        Only sealed slots (checksum known, described by a sidecar) are kept; the bytes of any other
        slot cannot be trusted and are freed.
        """
        folder.mkdir(parents=True, exist_ok=True)
        table = cls(folder)
        kept: set[Path] = set()
        for sidecar in folder.glob("rank*-slot*.json"):
            path = sidecar.with_suffix("")
            try:
                owner, index = (int(part) for part in path.name.removeprefix("rank").split("-slot"))
                record = json.loads(sidecar.read_text())
                intact = path.stat().st_size == record["size_bytes"] and record["crc32"] is not None
            except (OSError, ValueError, KeyError):
                continue
            if not intact or index >= SLOTS_PER_OWNER:
                continue
            slots = table.slots.setdefault(
                owner, [Slot(folder / f"rank{owner}-slot{i}") for i in range(SLOTS_PER_OWNER)]
            )
            slots[index] = Slot(
                path, record["size_bytes"], record["step"], record["crc32"], base64.b64decode(record["meta"])
            )
            kept |= {path, sidecar}
        for leftover in set(folder.iterdir()) - kept:
            leftover.unlink(missing_ok=True)
        return table

    def reserve(self, owner: int, size_bytes: int) -> tuple[int, Slot]:
        """Pick the slot not holding the newest snapshot, invalidate it and size its file."""
        with self.lock:
            slots = self.slots.setdefault(
                owner, [Slot(self.folder / f"rank{owner}-slot{i}") for i in range(SLOTS_PER_OWNER)]
            )
            index = min(range(len(slots)), key=lambda i: _age_key(slots[i]))
            slot = slots[index]
            slot.step, slot.crc32, slot.meta, slot.writing = None, None, b"", True
        _sidecar(slot.path).unlink(missing_ok=True)
        if slot.size_bytes != size_bytes or not slot.path.exists():
            with slot.path.open("a+b") as handle:
                handle.truncate(size_bytes)
            slot.size_bytes = size_bytes
        return index, slot

    def commit(self, owner: int, index: int, step: int, meta: bytes, crc32: int | None) -> None:
        with self.lock:
            slot = self.slots[owner][index]
            slot.step, slot.meta, slot.crc32, slot.writing = step, meta, crc32, False
            if crc32 is not None:
                _write_sidecar(slot)

    def seal(self, owner: int, index: int, step: int, crc32: int) -> None:
        with self.lock:
            slot = self.slots[owner][index]
            if slot.step == step:
                slot.crc32 = crc32
                _write_sidecar(slot)

    def find(self, owner: int, step: int) -> Slot | None:
        with self.lock:
            return next((s for s in self.slots.get(owner, []) if s.step == step), None)

    def steps(self, owner: int) -> list[int]:
        with self.lock:
            return sorted(s.step for s in self.slots.get(owner, []) if s.step is not None)


def serve_request(table: SlotTable, sock: socket.socket) -> bool:
    """Handle one request; return False when the agent should stop."""
    request = receive_message(sock)
    op = request["op"]
    owner = request.get("owner", -1)
    if op == "ping":
        send_message(sock, {"ok": True, "pid": os.getpid()})
    elif op == "reserve":
        index, slot = table.reserve(owner, request["size_bytes"])
        send_message(sock, {"ok": True, "slot": index, "path": str(slot.path)})
    elif op == "commit":
        meta = receive_bytes(sock, request["meta_bytes"])
        table.commit(owner, request["slot"], request["step"], meta, request.get("crc32"))
        send_message(sock, {"ok": True})
    elif op == "seal":
        table.seal(owner, request["slot"], request["step"], request["crc32"])
        send_message(sock, {"ok": True})
    elif op == "put":
        meta = receive_bytes(sock, request["meta_bytes"])
        index, slot = table.reserve(owner, request["size_bytes"])
        with (
            slot.path.open("r+b") as handle,
            mmap.mmap(handle.fileno(), max(slot.size_bytes, 1), flags=_MAP_FLAGS) as mapped,
        ):
            _receive_exact(sock, memoryview(mapped)[: slot.size_bytes])
        table.commit(owner, index, request["step"], meta, request["crc32"])
        send_message(sock, {"ok": True})
    elif op == "list":
        send_message(sock, {"ok": True, "steps": table.steps(owner)})
    elif op == "get":
        held = table.find(owner, request["step"])
        if held is None:
            send_message(
                sock, {"ok": False, "error": f"no snapshot of rank {owner} at step {request['step']}"}
            )
            return True
        with (
            held.path.open("rb") as reader,
            mmap.mmap(reader.fileno(), max(held.size_bytes, 1), _MAP_FLAGS, mmap.PROT_READ) as mapped,
        ):
            header = {
                "ok": True,
                "size_bytes": held.size_bytes,
                "meta_bytes": len(held.meta),
                "crc32": held.crc32,
            }
            send_message(sock, header, memoryview(held.meta), memoryview(mapped)[: held.size_bytes])
    elif op == "stop":
        send_message(sock, {"ok": True})
        return False
    else:
        send_message(sock, {"ok": False, "error": f"unknown op {op!r}"})
    return True


# ---------------------------------------------------------------------------------------------
# Worker side


def address_file(agent_dir: str | os.PathLike, node_id: int) -> Path:
    return Path(agent_dir) / f"node-{node_id}.json"


@dataclass
class AgentClient:
    """Talks to the agent of one node; finds its address anew on every call (agents may restart)."""

    agent_dir: Path
    node_id: int
    timeout_s: float = 30.0

    def _connect(self) -> socket.socket:
        try:
            address = json.loads(address_file(self.agent_dir, self.node_id).read_text())
            return socket.create_connection((address["host"], address["port"]), timeout=self.timeout_s)
        except (OSError, ValueError, KeyError) as error:
            raise AgentUnavailable(f"agent of node {self.node_id}: {error}") from None

    def _call(self, header: dict, *payloads: memoryview) -> dict:
        with self._connect() as sock:
            send_message(sock, header, *payloads)
            reply = receive_message(sock)
        if not reply.get("ok"):
            raise AgentUnavailable(f"agent of node {self.node_id}: {reply.get('error')}")
        return reply

    def available(self) -> bool:
        try:
            self._call({"op": "ping"})
        except (AgentUnavailable, OSError):
            return False
        return True

    def reserve(self, owner: int, size_bytes: int) -> tuple[int, str]:
        reply = self._call({"op": "reserve", "owner": owner, "size_bytes": size_bytes})
        return reply["slot"], reply["path"]

    def commit(self, owner: int, slot: int, step: int, meta: bytes) -> None:
        self._call(
            {"op": "commit", "owner": owner, "slot": slot, "step": step, "meta_bytes": len(meta)},
            memoryview(meta),
        )

    def seal(self, owner: int, slot: int, step: int, crc32: int) -> None:
        self._call({"op": "seal", "owner": owner, "slot": slot, "step": step, "crc32": crc32})

    def put(self, owner: int, step: int, meta: bytes, buffer: torch.Tensor, crc32: int) -> None:
        header = {
            "op": "put",
            "owner": owner,
            "step": step,
            "crc32": crc32,
            "meta_bytes": len(meta),
            "size_bytes": buffer.numel(),
        }
        self._call(header, memoryview(meta), as_bytes(buffer))

    def steps(self, owner: int) -> list[int]:
        return self._call({"op": "list", "owner": owner})["steps"]

    def get(self, owner: int, step: int) -> tuple[bytes, torch.Tensor, int | None]:
        """(snapshot meta, a private copy of the snapshot bytes, its CRC-32 if known)."""
        with self._connect() as sock:
            send_message(sock, {"op": "get", "owner": owner, "step": step})
            reply = receive_message(sock)
            if not reply.get("ok"):
                raise AgentUnavailable(f"agent of node {self.node_id}: {reply.get('error')}")
            meta = receive_bytes(sock, reply["meta_bytes"])
            import torch

            buffer = torch.empty(reply["size_bytes"], dtype=torch.uint8)
            _receive_exact(sock, as_bytes(buffer))
        return meta, buffer, reply["crc32"]

    def stop(self) -> None:
        self._call({"op": "stop"})


class SharedSlots:
    """A worker's mappings of its own slots in the local agent's shared memory, kept across saves.

    A mapping is keyed by the file's inode too: an agent restarted after a crash may free a slot
    and create a new file under the same name, which an old mapping would no longer reach. With a
    CUDA device the mapped pages are page-locked (`cudaHostRegister`) once, so the device-to-host
    copy of a snapshot runs at DMA speed straight into shared memory.
    """

    def __init__(self) -> None:
        self._mapped: dict[tuple[str, int, int], torch.Tensor] = {}

    def map(self, path: str, size_bytes: int) -> torch.Tensor:
        import torch

        key = (path, size_bytes, os.stat(path).st_ino)
        if key not in self._mapped:
            for stale in [k for k in self._mapped if k[0] == path]:
                _unpin(self._mapped.pop(stale))
            mapped = torch.from_file(path, shared=True, size=size_bytes, dtype=torch.uint8)
            _pin(mapped)
            self._mapped[key] = mapped
        return self._mapped[key]


def _pin(buffer: torch.Tensor) -> None:
    import torch

    if torch.cuda.is_available() and buffer.numel() > 0:
        code = torch.cuda.cudart().cudaHostRegister(buffer.data_ptr(), buffer.numel(), 0)
        if int(code) != 0:
            raise OSError(f"cudaHostRegister of a {buffer.numel()}-byte slot failed (cudaError {int(code)})")


def _unpin(buffer: torch.Tensor) -> None:
    import torch

    if torch.cuda.is_available() and buffer.numel() > 0:
        torch.cuda.cudart().cudaHostUnregister(buffer.data_ptr())
