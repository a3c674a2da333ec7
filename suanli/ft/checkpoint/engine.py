"""The checkpoint engine: snapshot while training runs, persist in the background, restore the newest intact.

    engine = CheckpointEngine(folder, rank, world_size, node_id=rank // 8, nodes=world_size // 8,
                              agent_dir=folder / "agents")
    step = engine.load(state) or 0       # newest verified: memory, peer replica, disk, older disk
    for step in range(step + 1, steps + 1):
        forward_backward()
        engine.wait_for_snapshot()        # the copy of the last save must be done before the update
        optimizer.step()
        engine.save(step, state, overlap=True)  # the copy runs during the next forward/backward
    engine.close()

Tiers, fastest first:
1. the local agent's shared memory (the staging buffer itself is a slot there), which survives a
   worker restart;
2. a replica in the memory of the next node's agent (ring placement), which survives losing a node;
3. PyTorch Distributed Checkpoint (DCP) directories on storage, each rank writing its own shards,
   a checksummed manifest written last and the directory renamed into place; keep-last-N.

`load` is collective: all ranks agree on one step that every rank can restore, and a tier is used
only if every rank's copy is there and intact. Candidates are tried newest first (memory before
disk at the same step); a disk checkpoint that fails verification is quarantined with one line
naming the file and the next older one is tried, so one bad file never stops a job.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultSavePlanner
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.planner import SavePlan

from suanli.ft.checkpoint import manifest as mf
from suanli.ft.checkpoint.manifest import CheckpointError
from suanli.ft.checkpoint.memory_tier import AgentClient, AgentUnavailable, SharedSlots, as_bytes
from suanli.ft.checkpoint.replica import replica_node
from suanli.ft.checkpoint.staging import (
    HostBuffer,
    Snapshot,
    accelerator_present,
    copy_tensors,
    flatten,
    local_tensor,
    prepare,
    staged_state,
    unflatten,
    view,
)
from suanli.ft.checkpoint.state import is_stateful
from suanli.ft.checkpoint.storage import CheckpointStorage, LocalStorage, crc32

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    """Where the last `load` came from: 'memory' (own node), 'replica' (peer node) or 'disk'."""

    step: int
    tier: str
    where: str


State = dict[str, Any] | Any
"""A dict of `Stateful` objects or plain values (as DCP takes), or one `Stateful` for the whole state."""


def _state_dicts(state: State) -> dict[str, Any]:
    if not isinstance(state, dict):
        return state.state_dict()
    return {key: value.state_dict() if is_stateful(value) else value for key, value in state.items()}


def _apply(state: State, loaded: dict[str, Any]) -> None:
    if not isinstance(state, dict):
        state.load_state_dict(loaded)
        return
    for key, value in state.items():
        if is_stateful(value):
            value.load_state_dict(loaded[key])
        else:
            state[key] = loaded[key]


def _crc32(buffer: torch.Tensor) -> int:
    return crc32(as_bytes(buffer))


@dataclass(frozen=True)
class Cost:
    """What one component of a save took on this rank: wall seconds, the CPU seconds of its thread,
    and when it finished (`time.perf_counter()`)."""

    wall_s: float
    cpu_s: float
    finished_s: float


class CheckpointEngine:
    """Asynchronous, tiered checkpoints for one rank. Every rank of the job creates one (collectively).

    Args:
        folder: where DCP checkpoints go (a `CheckpointStorage` or a local path).
        rank, world_size: this process in the job.
        node_id, nodes: which node this rank is on, and how many nodes the job spans.
        agent_dir: folder where node agents announce themselves; None disables the memory tiers.
        keep_last: committed disk checkpoints to keep.
        disk_every: persist every k-th save to disk; the others go to the memory tiers only.
    """

    def __init__(
        self,
        folder: str | os.PathLike | CheckpointStorage,
        rank: int = 0,
        world_size: int = 1,
        *,
        node_id: int = 0,
        nodes: int = 1,
        agent_dir: str | os.PathLike | None = None,
        keep_last: int = 3,
        disk_every: int = 1,
    ) -> None:
        if keep_last < 1 or disk_every < 1:
            raise ValueError(f"keep_last and disk_every must be >= 1, got {keep_last} and {disk_every}")
        self.storage = folder if isinstance(folder, CheckpointStorage) else LocalStorage(folder)
        self.rank, self.world_size = rank, world_size
        self.node_id, self.nodes = node_id, nodes
        self.keep_last, self.disk_every = keep_last, disk_every
        self.restored: Restored | None = None
        self._distributed = dist.is_available() and dist.is_initialized()
        # Background saves run collectives; a group of their own keeps them apart from training's.
        self._group = dist.new_group(backend="gloo") if self._distributed else None
        self._local = AgentClient(Path(agent_dir), node_id) if agent_dir is not None else None
        peer = replica_node(node_id, nodes)
        self._peer = (
            AgentClient(Path(agent_dir), peer) if agent_dir is not None and peer is not None else None
        )
        self._host_buffer = HostBuffer()
        self._shared_slots = SharedSlots()
        # Disk and replica have a thread each; a save that goes to both reaches the peer after its
        # disk write (`_replicate`).
        self._to_disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ckpt-disk-rank{rank}")
        self._to_peers = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ckpt-peers-rank{rank}")
        self._copier = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ckpt-copy-rank{rank}")
        self._copying: Future | None = None
        self._pending: list[Future] = []
        self._costs: dict[str, Cost] = {}
        self._warned_no_agent = False
        if rank == 0:
            mf.remove_partials(self.storage)
        self._barrier()

    # -- save -----------------------------------------------------------------------------------

    def save(self, step: int, state: State, *, overlap: bool = False) -> None:
        """Snapshot `state` as of `step` and persist it in the background.

        First waits until the previous save is fully persisted. With `overlap=False` the tensors
        are copied before `save` returns. With `overlap=True` the copy runs in a background thread
        (on a side stream for device tensors) and `save` returns at once: the caller must call
        `wait_for_snapshot()` before anything changes the state (before the optimizer step).
        """
        self.wait()
        self._costs = {}
        snapshot, live = prepare(_state_dicts(state))
        ready = torch.accelerator.current_stream().record_event() if accelerator_present() else None
        # The copy thread asks the agent for a slot: a round trip the training thread does not wait for.
        acquired: Future[torch.Tensor] = Future()
        copied = self._copier.submit(self._copy, step, snapshot, live, acquired, ready)
        self._copying = copied
        disk = None
        if step % self.disk_every == 0:
            disk = self._to_disk.submit(self._persist_to_disk, acquired, copied, step, snapshot, live)
            self._pending.append(disk)
        if not overlap:
            self.wait_for_snapshot()
        if self._local is not None or self._peer is not None:
            self._pending.append(self._to_peers.submit(self._replicate, copied, disk, step, snapshot))

    def wait_for_snapshot(self) -> float:
        """Block until the last save's copy is complete; the seconds spent waiting."""
        copying, self._copying = self._copying, None
        if copying is None:
            return 0.0
        start = time.perf_counter()
        copying.result()
        return time.perf_counter() - start

    def costs(self) -> dict[str, Cost]:
        """The background work of the last save by component, as far as it has run: 'copy' (a slot
        from the local agent and the copy into it), 'checksum' (CRC-32 sealing the memory
        snapshot), 'replica' (sending it to the peer node's agent), 'disk_write' (DCP's plan, the
        shards, their checksums, fsync), 'commit' (manifest, rename) and, on rank 0, 'prune' (older
        checkpoints deleted). The agents' own work (receiving a replica) is not included."""
        return dict(self._costs)

    @contextmanager
    def _costing(self, component: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            now = time.perf_counter()
            self._costs[component] = Cost(now - wall, time.thread_time() - cpu, now)

    def busy(self) -> bool:
        """Whether a save is still copying or persisting (and so competing with training)."""
        in_flight = [*self._pending, *([self._copying] if self._copying is not None else [])]
        return any(not future.done() for future in in_flight)

    def _acquire(self, nbytes: int) -> tuple[torch.Tensor, int | None]:
        """A slot of the local agent's shared memory and its index (so the copy is the memory tier),
        else a host buffer and None."""
        if self._local is not None:
            try:
                index, path = self._local.reserve(self.rank, nbytes)
                return self._shared_slots.map(path, nbytes), index
            except (AgentUnavailable, OSError) as error:
                self._warn_no_agent(error)
        return self._host_buffer(nbytes), None

    def _warn_no_agent(self, error: Exception) -> None:
        if not self._warned_no_agent:
            log.warning("rank %d: memory tier unavailable, staging in host memory (%s)", self.rank, error)
            self._warned_no_agent = True

    def _copy(
        self,
        step: int,
        snapshot: Snapshot,
        live: dict[str, torch.Tensor],
        acquired: Future[torch.Tensor],
        ready: torch.Event | None,
    ) -> tuple[torch.Tensor, int | None]:
        """Stage the snapshot: a buffer (handed to the disk thread through `acquired` as soon as it
        is known, so DCP can plan while the bytes are copied), the copy, and the agent told."""
        with self._costing("copy"):
            try:
                buffer, slot = self._acquire(snapshot.nbytes)
            except BaseException as error:
                acquired.set_exception(error)
                raise
            acquired.set_result(buffer)
            copy_tensors(snapshot, buffer, live, ready)
        if slot is not None:
            assert self._local is not None  # only the local agent hands out slots (_acquire)
            try:
                self._local.commit(self.rank, slot, step, snapshot.to_meta_bytes())
            except (AgentUnavailable, OSError) as error:
                self._warn_no_agent(error)
                return buffer, None
            self._warned_no_agent = False
        return buffer, slot

    def _replicate(self, copied: Future, disk: Future | None, step: int, snapshot: Snapshot) -> None:
        """Checksum the staged snapshot for the local agent, then copy it to the peer node's agent.

        When the save also goes to disk, the peer copy starts once the disk write is over (done
        or failed): both would otherwise share the same cores and network, and the durable copy
        comes first. Until then the peer still holds this rank's previous snapshot.
        """
        buffer, slot = copied.result()
        if slot is None and self._peer is None:
            return  # the agent was unavailable: nothing holds this snapshot in memory
        with self._costing("checksum"):
            crc = _crc32(buffer)
        if slot is not None:
            local = self._local
            assert local is not None  # only the local agent hands out slots (_acquire)
            self._try(lambda: local.seal(self.rank, slot, step, crc), "seal local snapshot")
        if self._peer is not None:
            if disk is not None:
                futures.wait([disk])
            meta = snapshot.to_meta_bytes()
            peer = self._peer
            with self._costing("replica"):
                self._try(lambda: peer.put(self.rank, step, meta, buffer, crc), "replicate to peer")

    def _try(self, action, what: str) -> None:
        try:
            action()
        except (AgentUnavailable, OSError) as error:
            log.warning("rank %d: could not %s (%s)", self.rank, what, error)

    def _persist_to_disk(
        self, acquired: Future[torch.Tensor], copied: Future, step: int, snapshot: Snapshot, live: dict
    ) -> None:
        """Write the staged snapshot as a DCP checkpoint and publish it.

        DCP plans the checkpoint (shapes only, and two collectives) while the copy runs; the
        first byte is written once the copy is done. Not earlier: writing while the copy runs
        takes cores and the GIL from the copy and from the training thread, which then waits
        longer for the snapshot before its optimizer step (measured: up to 0.16 s on 4 ranks / 2
        cores).
        """
        staged = staged_state(snapshot, acquired.result(), live)
        directory = mf.partial_name(step)
        writer = self.storage.writer(directory)
        with self._costing("disk_write"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            try:
                dcp.save(
                    staged,
                    storage_writer=writer,
                    planner=_WritesAfterCopy(copied),
                    process_group=self._group,
                    no_dist=not self._distributed,
                )
            except CheckpointException as failure:  # a BaseException, with every rank's traceback
                copied.result()  # a failed copy is the save's error, as it is the snapshot's
                rank, (error, _) = min(failure.failures.items(), key=lambda item: item[0])
                raise CheckpointError(
                    f"{self.storage.describe(directory)}: could not write (rank {rank}: "
                    f"{type(error).__name__}: {error})"
                ) from None
        with self._costing("commit"):
            self._commit(step, directory, writer.checksums)
        if self.rank == 0:  # after every rank has its answer, so that none waits for the deletions
            with self._costing("prune"):
                mf.prune(self.storage, self.keep_last)

    def _commit(self, step: int, directory: str, checksums: dict[str, tuple[int, int]]) -> None:
        """Rank 0 writes the manifest of every rank's shards and publishes the directory."""
        every_rank = self._all_gather(checksums)
        error = None
        if self.rank == 0:
            try:
                merged = {name: value for part in every_rank for name, value in part.items()}
                merged[mf.METADATA_FILE] = mf.crc32_of(self.storage.read_chunks(directory, mf.METADATA_FILE))
                mf.write_manifest(self.storage, directory, mf.new_manifest(step, self.world_size, merged))
                self.storage.commit(directory, mf.checkpoint_name(step))
            except OSError as failure:
                error = f"{self.storage.describe(directory)}: could not commit ({failure})"
        error = self._broadcast(error)
        if error:
            raise CheckpointError(error)

    def wait(self) -> None:
        """Block until this rank's last save is fully persisted; re-raise its error if it failed."""
        self.wait_for_snapshot()
        pending, self._pending = self._pending, []
        futures.wait(pending)  # all of them, so that no failure leaves another one running
        for future in pending:
            future.result()

    # -- restore --------------------------------------------------------------------------------

    def latest(self) -> int | None:
        """The newest committed step on disk (not yet verified), or None."""
        steps = mf.committed_steps(self.storage)
        return steps[-1] if steps else None

    def load(self, state: State) -> int | None:
        """Restore `state` in place from the newest checkpoint every rank can use; its step (None: fresh).

        Collective. Candidates, newest first and memory before disk at the same step: snapshots in
        the agents' memory (own node, then the peer's replica), then committed disk checkpoints.
        A disk checkpoint that fails verification (manifest, size, CRC-32) is quarantined and the
        next is tried. Raises `CheckpointError`, one line, if a checkpoint was written by another
        model, or if checkpoints exist and every one of them failed verification.
        """
        self.wait()
        memory = [(step, "memory") for step in self._common_memory_steps()]
        disk = [(step, "disk") for step in mf.committed_steps(self.storage)]
        quarantined: list[str] = []
        for step, kind in sorted(memory + disk, key=lambda c: (c[0], c[1] == "memory"), reverse=True):
            if kind == "memory":
                restored = self._load_from_memory(step, state)
            else:
                restored = self._load_from_disk(step, state, quarantined)
            if restored is not None:
                self.restored = restored
                return step
        if quarantined:
            raise CheckpointError(
                f"{self.storage.describe('')}: no usable checkpoint, {len(quarantined)} quarantined; "
                f"newest: {quarantined[0]}"
            )
        return None

    def _holders(self) -> list[tuple[str, AgentClient]]:
        tiers = [("memory", self._local), ("replica", self._peer)]
        return [(tier, client) for tier, client in tiers if client is not None]

    def _common_memory_steps(self) -> list[int]:
        """Steps whose snapshot every rank can fetch from some agent."""
        mine: set[int] = set()
        for _, client in self._holders():
            try:
                mine.update(client.steps(self.rank))
            except (AgentUnavailable, OSError):
                continue
        return sorted(set.intersection(*(set(steps) for steps in self._all_gather(sorted(mine)))))

    def _fetch(self, step: int) -> tuple[Snapshot, torch.Tensor, str, str] | str:
        """This rank's snapshot at `step` from the first holder that has an intact copy, or why none did."""
        problems = []
        for tier, client in self._holders():
            where = f"{tier} snapshot of rank {self.rank} at step {step} on node {client.node_id}"
            try:
                meta, buffer, crc = client.get(self.rank, step)
            except (AgentUnavailable, OSError) as error:
                problems.append(f"{where}: {error}")
                continue
            if crc is not None and _crc32(buffer) != crc:
                problems.append(f"{where}: checksum mismatch")
                continue
            return Snapshot.from_meta_bytes(meta), buffer, tier, where
        return "; ".join(problems) or f"no holder of rank {self.rank}'s snapshot at step {step}"

    def _load_from_memory(self, step: int, state: State) -> Restored | None:
        fetched = self._fetch(step)
        if isinstance(fetched, str):
            self._every_rank_can_restore(fetched)  # the others still wait for this rank's answer
            return None
        snapshot, buffer, tier, where = fetched
        plain = _state_dicts(state)
        skeleton, live, _ = flatten(plain)
        problem = _mismatch(
            snapshot.shapes(),
            {p: (tuple(local_tensor(t).shape), t.dtype) for p, t in live.items()},
            where,
        )
        if not self._every_rank_can_restore(problem):
            return None
        for entry in snapshot.entries:
            local_tensor(live[entry.path]).copy_(view(buffer, entry))
        _apply(state, unflatten(skeleton, live, snapshot.objects))
        return Restored(step, tier, where)

    def _every_rank_can_restore(self, problem: str | None) -> bool:
        """Collective: whether no rank has a problem with its memory snapshot; the first is logged."""
        problems = [p for p in self._all_gather(problem) if p]
        if problems:
            log.warning("rank %d: not restoring from memory: %s", self.rank, problems[0])
        return not problems

    def _load_from_disk(self, step: int, state: State, quarantined: list[str]) -> Restored | None:
        """Verify, then load one disk checkpoint; None (after quarantining it) if it is corrupt."""
        name = mf.checkpoint_name(step)
        foreign = mf.is_foreign(self.storage, name)
        corrupt = mismatch = None
        plain = _state_dicts(state)
        try:
            if not foreign:
                manifest = mf.read_manifest(self.storage, name)
                mf.verify(self.storage, name, sorted(manifest.files)[self.rank :: self.world_size])
            stored = self._stored_shapes(name)
        except CheckpointError as error:
            corrupt = str(error)
        else:
            _, live, _ = flatten(plain)
            mismatch = _mismatch(
                stored,
                {p: (tuple(t.shape), t.dtype) for p, t in live.items()},
                self.storage.describe(name, mf.METADATA_FILE),
                exact=False,
            )
        problems = self._all_gather((corrupt, mismatch))
        corrupt = next((c for c, _ in problems if c), None)
        mismatch = next((m for _, m in problems if m), None)
        if corrupt is not None:
            if self.rank == 0:
                moved = mf.quarantine(self.storage, name)
                log.warning("quarantined %s as %s: %s", self.storage.describe(name), moved, corrupt)
            self._barrier()
            quarantined.append(corrupt)
            return None
        if mismatch is not None:
            raise CheckpointError(mismatch)
        dcp.load(
            plain,
            storage_reader=self.storage.reader(name),
            process_group=self._group,
            no_dist=not self._distributed,
        )
        _apply(state, plain)
        unverified = " (written without a manifest: no checksums to verify)" if foreign else ""
        return Restored(step, "disk", self.storage.describe(name) + unverified)

    def _stored_shapes(self, name: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        where = self.storage.describe(name, mf.METADATA_FILE)
        if mf.METADATA_FILE not in self.storage.files(name):
            raise CheckpointError(f"{where}: missing; the checkpoint was not completed")
        try:
            stored = self.storage.reader(name).read_metadata().state_dict_metadata
        except Exception as error:  # unpickling damaged bytes can raise nearly anything
            raise CheckpointError(f"{where}: unreadable ({type(error).__name__}: {error})") from None
        return {
            key: (tuple(meta.size), meta.properties.dtype)
            for key, meta in stored.items()
            if isinstance(meta, TensorStorageMetadata)
        }

    # -- plumbing -------------------------------------------------------------------------------

    def _all_gather(self, value: Any) -> list[Any]:
        if not self._distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value, group=self._group)
        return gathered

    def _broadcast(self, value: Any) -> Any:
        if not self._distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0, group=self._group)
        return holder[0]

    def _barrier(self) -> None:
        if self._distributed:
            dist.barrier(group=self._group)

    def close(self) -> None:
        """Finish the last save and stop the background thread."""
        try:
            self.wait()
        finally:
            self._to_disk.shutdown(wait=True)
            self._to_peers.shutdown(wait=True)
            self._copier.shutdown(wait=True)


class _WritesAfterCopy(DefaultSavePlanner):
    """DCP's default planner whose final plan, the last step before writing, waits for the copy."""

    def __init__(self, copied: Future) -> None:
        super().__init__()
        self._copied = copied

    def finish_plan(self, new_plan: SavePlan) -> SavePlan:
        self._copied.result()
        return super().finish_plan(new_plan)


def _mismatch(
    stored: dict[str, tuple[tuple[int, ...], torch.dtype]],
    live: dict[str, tuple[tuple[int, ...], torch.dtype]],
    where: str,
    exact: bool = True,
) -> str | None:
    """Why a stored state does not fit the live one (another model?), or None if it does."""
    for path, (shape, dtype) in live.items():
        if path not in stored:
            return f"{where}: has no tensor {path!r}; was it written by another model?"
        if stored[path] != (shape, dtype):
            return (
                f"{where}: {path!r} is {list(stored[path][0])} {stored[path][1]}, this model has "
                f"{list(shape)} {dtype}; was it written by another model?"
            )
    extra = sorted(set(stored) - set(live)) if exact else []
    if extra:
        return (
            f"{where}: holds tensor {extra[0]!r} this model does not have; was it written by another model?"
        )
    return None
