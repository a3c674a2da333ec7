"""The manifest: the last file written into a checkpoint, listing every other file with its checksum.

A directory counts as a checkpoint only when it has its final name, `step-N` as torchtitan names
them (the rename is the commit); `verify` re-reads every file its manifest lists and compares size
and CRC-32, so a truncated, corrupted or missing shard is reported by name instead of loaded. A
`step-N` directory without a manifest but with DCP's `.metadata` was written by plain DCP or
torchtitan (which write `.metadata` last): it is foreign, loadable, and has no checksums to verify.
A checkpoint that fails verification is renamed `step-N.corrupt` (quarantined), never deleted.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import ClassVar

from suanli.ft.checkpoint.storage import CheckpointStorage, crc32_of
from suanli.spec.errors import SuanliError

MANIFEST_FILE = "manifest.json"
METADATA_FILE = ".metadata"
PARTIAL_SUFFIX = ".partial"
QUARANTINE_SUFFIX = ".corrupt"
FORMAT = "suanli-ft/dcp-v1"
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(SuanliError):
    """A checkpoint that cannot be used: names the file and what is wrong with it. Not a SpecError
    (the user's input is fine) nor a StoreError (the job store is fine): the run's saved state is."""

    http_status: ClassVar[int] = 409


@dataclass(frozen=True)
class FileEntry:
    size_bytes: int
    crc32: int


@dataclass(frozen=True)
class Manifest:
    step: int
    world_size: int
    files: dict[str, FileEntry]
    created_unix_s: float
    format: str = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            raw = json.loads(data)
            files = {name: FileEntry(**entry) for name, entry in raw.pop("files").items()}
            manifest = cls(files=files, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CheckpointError(f"{where}: unreadable manifest ({error})") from None
        if manifest.format != FORMAT:
            raise CheckpointError(f"{where}: format {manifest.format!r}, expected {FORMAT!r}")
        return manifest


def checkpoint_name(step: int) -> str:
    return f"step-{step}"


def partial_name(step: int) -> str:
    return checkpoint_name(step) + PARTIAL_SUFFIX


def step_of(name: str) -> int | None:
    """The step a committed checkpoint directory holds, or None for anything else."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def committed_steps(storage: CheckpointStorage) -> list[int]:
    """Steps of the directories that were committed (renamed into place), oldest first."""
    return sorted(step for name in storage.names() if (step := step_of(name)) is not None)


def is_foreign(storage: CheckpointStorage, name: str) -> bool:
    """Written by plain DCP or torchtitan: DCP metadata, no manifest of ours."""
    files = storage.files(name)
    return MANIFEST_FILE not in files and METADATA_FILE in files


def quarantine(storage: CheckpointStorage, name: str) -> str:
    """Move a checkpoint that failed verification out of the way, keeping it for inspection."""
    taken = set(storage.names())
    target = next(
        candidate
        for index in range(len(taken) + 1)
        if (candidate := name + QUARANTINE_SUFFIX + (f".{index}" if index else "")) not in taken
    )
    storage.rename(name, target)
    return target


def write_manifest(storage: CheckpointStorage, directory: str, manifest: Manifest) -> None:
    storage.write_durable(directory, MANIFEST_FILE, manifest.to_json())


def read_manifest(storage: CheckpointStorage, name: str) -> Manifest:
    where = storage.describe(name, MANIFEST_FILE)
    if MANIFEST_FILE not in storage.files(name):
        raise CheckpointError(f"{where}: missing; the checkpoint was not completed")
    return Manifest.from_json(b"".join(storage.read_chunks(name, MANIFEST_FILE)), where)


def verify(storage: CheckpointStorage, name: str, files: list[str] | None = None) -> Manifest:
    """Check the manifest and the listed files (all, or just `files`); raise `CheckpointError` if bad."""
    manifest = read_manifest(storage, name)
    present = storage.files(name)
    if METADATA_FILE not in manifest.files:
        raise CheckpointError(f"{storage.describe(name, MANIFEST_FILE)}: does not list {METADATA_FILE}")
    for file in manifest.files if files is None else files:
        expected = manifest.files[file]
        where = storage.describe(name, file)
        if file not in present:
            raise CheckpointError(f"{where}: missing shard listed in the manifest")
        if present[file] != expected.size_bytes:
            raise CheckpointError(
                f"{where}: {present[file]} bytes, the manifest says {expected.size_bytes} "
                "(truncated or partial)"
            )
        crc, _ = crc32_of(storage.read_chunks(name, file))
        if crc != expected.crc32:
            raise CheckpointError(
                f"{where}: checksum {crc:08x} does not match the manifest's {expected.crc32:08x}"
            )
    return manifest


def new_manifest(step: int, world_size: int, checksums: dict[str, tuple[int, int]]) -> Manifest:
    files = {name: FileEntry(size_bytes=size, crc32=crc) for name, (crc, size) in checksums.items()}
    return Manifest(step=step, world_size=world_size, files=files, created_unix_s=time.time())


def prune(storage: CheckpointStorage, keep_last: int) -> list[int]:
    """Delete committed checkpoints beyond the newest `keep_last`; return the deleted steps."""
    steps = committed_steps(storage)
    doomed = steps[:-keep_last] if keep_last > 0 else []
    for step in doomed:
        storage.delete(checkpoint_name(step))
    return doomed


def remove_partials(storage: CheckpointStorage) -> list[str]:
    """Delete directories left by saves that never committed (call only while no save runs)."""
    stale = [name for name in storage.names() if name.endswith(PARTIAL_SUFFIX)]
    for name in stale:
        storage.delete(name)
    return stale


def removable(storage: CheckpointStorage) -> list[str]:
    """Everything a fresh start clears: committed, partial and quarantined checkpoints, agent files."""
    ours = (PARTIAL_SUFFIX, QUARANTINE_SUFFIX)
    return [
        name
        for name in storage.names()
        if step_of(name) is not None or any(s in name for s in ours) or name == "agents"
    ]
