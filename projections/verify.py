"""Checking projections against the log: ``verify``, the last consistent point, ``rebuild``.

``verify`` rebuilds a thread from its first event, without snapshots, and compares the
result with the live state (the projector's, or snapshot plus tail) and with every stored
snapshot of the thread; it passes when all agree, and otherwise says where they differ.
``last_consistent_seq`` finds the latest point before the head where no memory key was in
conflict and the snapshot-based state equals the rebuilt one. ``rebuild`` drops every
snapshot and checkpoint and folds every thread again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

import anyio

from eventstore.envelope import RecordedEvent
from projections.errors import NothingToRollBack, ThreadNotFound
from projections.port import SnapshotStore
from projections.reader import StateReader
from projections.serial import Snapshot, SnapshotInvalid, to_json
from projections.state import ThreadState

log = logging.getLogger(__name__)

MAX_DIFFERENCES = 20
"""Most differences a verify result lists."""


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyResult:
    """What ``verify`` found for one thread.

    Attributes:
        thread_id: The thread.
        version: The version compared.
        ok: True when the live state, every snapshot and the rebuild agree.
        differences: Where the live state differs from the rebuild (``path: live != rebuilt``).
        snapshots_checked: How many stored snapshots were compared.
        bad_snapshots: Seqs of snapshots that differ from the rebuild or do not decode.
    """

    thread_id: str
    version: int
    ok: bool
    differences: tuple[str, ...]
    snapshots_checked: int
    bad_snapshots: tuple[int, ...]


def diff(live: Any, rebuilt: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as ``path: live != rebuilt`` lines (``Any``: JSON)."""
    if isinstance(live, dict) and isinstance(rebuilt, dict):
        out: list[str] = []
        for key in sorted(set(live) | set(rebuilt)):
            where = f"{path}.{key}" if path else str(key)
            if key not in live:
                out.append(f"{where}: missing in live, rebuilt has {_short(rebuilt[key])}")
            elif key not in rebuilt:
                out.append(f"{where}: live has {_short(live[key])}, missing in rebuilt")
            else:
                out.extend(diff(live[key], rebuilt[key], where))
        return out
    if isinstance(live, list) and isinstance(rebuilt, list):
        out = []
        if len(live) != len(rebuilt):
            out.append(f"{path}: live has {len(live)} items, rebuilt has {len(rebuilt)}")
        for i, (a, b) in enumerate(zip(live, rebuilt, strict=False)):
            out.extend(diff(a, b, f"{path}[{i}]"))
        return out
    if live != rebuilt:
        return [f"{path}: live {_short(live)} != rebuilt {_short(rebuilt)}"]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


async def verify(
    reader: StateReader, thread_id: str, live: ThreadState | None = None
) -> VerifyResult:
    """Compare a thread's live state and snapshots with a rebuild from scratch.

    Args:
        reader: The reader (its store's snapshots are checked too).
        thread_id: The thread.
        live: The live state to check (e.g. the projector's); default: the reader's.

    Raises:
        ThreadNotFound: the thread has no events.
    """
    if live is None:
        live = await reader.state(thread_id)
    if live.version == 0:
        raise ThreadNotFound(thread_id)
    store = reader.store
    seqs = await store.seqs(thread_id, reader.rules.digest) if store is not None else []
    seqs = [s for s in seqs if s <= live.version]
    rebuilt = await reader.scratch_at(thread_id, [*seqs, live.version])
    differences = diff(to_json(live), to_json(rebuilt[live.version]))
    bad: list[int] = []
    for seq in seqs:
        snapshot = (
            await store.latest(thread_id, reader.rules.digest, max_seq=seq) if store else None
        )
        if snapshot is None or snapshot.seq != seq:
            continue
        try:
            if await reader.decode_snapshot(snapshot) != rebuilt[seq]:
                bad.append(seq)
        except SnapshotInvalid:
            bad.append(seq)
    ok = not differences and not bad
    reader.observer.verified(thread_id, ok)
    if not ok:
        log.warning(
            "verify of thread %r failed: %d differences, bad snapshots at %s",
            thread_id,
            len(differences),
            bad,
        )
    return VerifyResult(
        thread_id=thread_id,
        version=live.version,
        ok=ok,
        differences=tuple(differences[:MAX_DIFFERENCES]),
        snapshots_checked=len(seqs),
        bad_snapshots=tuple(bad),
    )


async def last_consistent_seq(reader: StateReader, thread_id: str) -> int:
    """The latest seq before the head with no memory key in conflict and where the state
    from snapshots equals the state rebuilt from scratch.

    Raises:
        ThreadNotFound: the thread has no events.
        NothingToRollBack: the head itself is consistent, or no earlier point is.
    """
    version = await reader.log.version(thread_id)
    if version == 0:
        raise ThreadNotFound(thread_id)
    states = await reader.scratch_at(thread_id, range(1, version + 1))

    async def passes(seq: int) -> bool:
        state = states[seq]
        if state.conflicts():
            return False
        return await reader.state_at(thread_id, seq=seq) == state

    if await passes(version):
        raise NothingToRollBack(
            thread_id, f"version {version} has no unresolved conflict and verifies"
        )
    for seq in range(version - 1, 0, -1):
        if await passes(seq):
            return seq
    raise NothingToRollBack(thread_id, "every earlier point has a conflict or fails verify")


@dataclasses.dataclass(frozen=True, slots=True)
class RebuildResult:
    """What ``rebuild`` did: threads and events folded, snapshots written, time taken."""

    threads: int
    events: int
    snapshots_deleted: int
    seconds: float
    position: int


SAVE_BATCH = 64
"""Snapshots ``rebuild`` stores per transaction."""


def raise_sole(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one error a task group failed with as itself (a caller catches a
    ``SnapshotStoreError``, not a group holding one); a group of several as it is."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, BaseExceptionGroup):
        raise group
    raise error from error.__cause__


async def rebuild(
    reader: StateReader,
    *,
    name: str = "default",
    progress: Callable[[str, int], None] | None = None,
) -> RebuildResult:
    """Drop every snapshot and checkpoint, then fold every thread from its first event.

    Threads are folded one at a time (the next ones are read meanwhile); the snapshots
    the folds make are stored :data:`SAVE_BATCH` to a transaction by a writer task, in
    the order they were made, while the folding goes on.

    Args:
        reader: The reader; its store is cleared and refilled.
        name: The projector whose checkpoint is set to the log head afterwards.
        progress: Called with ``(thread_id, events folded)`` after each thread.
    """
    started = time.perf_counter()
    store: SnapshotStore | None = reader.store
    head = await reader.log.head()
    deleted = await store.clear() if store is not None else 0
    if reader.cache is not None:
        reader.cache.drop()
    threads = events = 0
    # The next threads' events are read (in worker threads) while this one folds.
    send, receive = anyio.create_memory_object_stream[tuple[str, list[RecordedEvent]]](2)
    # Snapshots go to the writer in batches; one batch may wait while another is stored.
    to_writer, batches = anyio.create_memory_object_stream[list[Snapshot]](1)
    pending: list[Snapshot] = []
    queued: set[str] = set()  # chunks in a batch not stored yet: later snapshots skip them

    async def read_ahead() -> None:
        async with send:
            after = ""
            while batch := await reader.log.threads(after=after):
                for info in batch:
                    await send.send((info.thread_id, await reader.log.read_thread(info.thread_id)))
                after = batch[-1].thread_id

    async def save(state: ThreadState) -> None:
        snapshot = reader.snapshot_of(state)
        if snapshot is None:
            return
        chunks = {d: b for d, b in snapshot.chunks.items() if d not in queued}
        queued.update(chunks)
        pending.append(dataclasses.replace(snapshot, chunks=chunks))
        if len(pending) >= SAVE_BATCH:
            await to_writer.send(pending.copy())
            pending.clear()

    async def write() -> None:
        async with batches:
            async for batch in batches:
                assert store is not None  # snapshot_of makes none without a store
                await store.save_many(batch)
                for snapshot in batch:
                    reader.saved(snapshot)
                    queued.difference_update(snapshot.chunks)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            async with to_writer:
                tg.start_soon(read_ahead)
                async with receive:
                    async for thread_id, history in receive:
                        state = await reader.fold_events(
                            ThreadState(thread_id=thread_id), history, save=save
                        )
                        if reader.cache is not None:
                            reader.cache.put(state)
                        # The chunks of this thread's snapshots are no use to the next thread;
                        # kept, they hold its entries alive, and the collector's full passes
                        # over them cost more than the cache saves.
                        reader.chunks.clear()
                        threads += 1
                        events += len(history)
                        if progress is not None:
                            progress(thread_id, len(history))
                if pending:
                    await to_writer.send(pending.copy())
    except BaseExceptionGroup as group:
        raise_sole(group)
    if store is not None:
        await store.save_checkpoint(name, head)
    return RebuildResult(
        threads=threads,
        events=events,
        snapshots_deleted=deleted,
        seconds=time.perf_counter() - started,
        position=head,
    )
