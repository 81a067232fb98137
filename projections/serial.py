"""Snapshots of thread state as bytes: versioned, compressed, checksummed, chunked.

A thread's state grows with its history (every message, task and routing decision), and
most of it does not change from one snapshot to the next. So a snapshot is two things:

* a *head* (``Snapshot.body``): the state without its conversation, tasks and routing, plus
  the digests of the chunks that hold those, as JSON compressed with Zstandard (level 1:
  about twice zlib's speed at level 1, and smaller), with a BLAKE2b
  checksum, the format version and the merge-rules digest beside it;
* *chunks*: the conversation and routing in runs of :data:`CHUNK_SIZE` entries (by
  position), the tasks in runs of :data:`CHUNK_SIZE` (in the state's order), and the write
  history of each ``merge`` key likewise, each a compressed JSON array named by the
  BLAKE2b digest of its content. A chunk is stored
  once, however many snapshots (or forks) share it, and checked against its name on load.

A :class:`ChunkCache` keeps decoded chunks (by digest) and the digests of chunks it has
encoded (by the identity of their entries, which are immutable), so loading the next
snapshot of a hot thread decodes only its head and the chunks that changed, and saving
one encodes only those. :func:`decode` refuses a damaged head, an unknown format, or a
missing or damaged chunk with :class:`SnapshotInvalid`; readers then skip the snapshot
(with a warning) and rebuild from an older one or the log.

``FORMAT`` changes whenever the state's shape changes, so an old snapshot is never read as
a new state: it is ignored and rebuilt. No I/O here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from projections.errors import ProjectionError
from projections.memory import Write
from projections.state import ConversationEntry, RoutingRecord, TaskView, ThreadState

if sys.version_info >= (3, 14):  # pragma: no cover - the standard library's own
    from compression import zstd
else:
    from backports import zstd

FORMAT = 3
"""The snapshot format this code writes and reads (1: one body, no chunks; 2: chunks
compressed with zlib)."""
ZSTD_LEVEL = 1
"""Zstandard level of heads and chunks (snapshots are written far more often than read)."""
CHUNK_SIZE = 64
"""Entries per chunk."""

_STATE = TypeAdapter(ThreadState)
_PARTS: dict[str, TypeAdapter[Any]] = {
    "conversation": TypeAdapter(list[ConversationEntry]),
    "tasks": TypeAdapter(list[TaskView]),
    "routing": TypeAdapter(list[RoutingRecord]),
    "history": TypeAdapter(list[Write]),
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotHead:
    """A snapshot's head: the state without its chunked parts, and the chunks' digests."""

    state: ThreadState
    conversation: tuple[str, ...]
    tasks: tuple[str, ...]
    routing: tuple[str, ...]
    histories: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


_HEAD_ADAPTER = TypeAdapter(SnapshotHead)


class SnapshotInvalid(ProjectionError):
    """A snapshot cannot be used: damaged, of an unknown format, or not what it claims."""

    def __init__(self, thread_id: str, seq: int, detail: str) -> None:
        self.thread_id = thread_id
        self.seq = seq
        self.detail = detail
        super().__init__(f"snapshot of thread {thread_id!r} at seq {seq}: {detail}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A snapshot: the state of ``thread_id`` at ``seq``, encoded.

    Attributes:
        thread_id: The thread.
        seq: The state's version.
        high_time: The latest ``occurred_at`` among the thread's events 1..seq (a state
            "as of" a time T may start from this snapshot iff ``high_time <= T``).
        rules_digest: The merge rules it was folded under.
        format: Its format version.
        checksum: BLAKE2b-128 of ``body``, hex.
        body: The compressed head.
        chunks: Chunks to store with it, digest -> compressed chunk (those the store may
            not have yet; empty on snapshots read back from a store).
    """

    thread_id: str
    seq: int
    high_time: datetime | None
    rules_digest: str
    format: int
    checksum: str
    body: bytes
    chunks: Mapping[str, bytes] = dataclasses.field(default_factory=dict)


def saving(snapshots: Sequence[Snapshot]) -> str:
    """What a store says it was doing when saving ``snapshots`` failed."""
    if len(snapshots) == 1:
        return f"saving the snapshot of {snapshots[0].thread_id!r} at seq {snapshots[0].seq}"
    return f"saving {len(snapshots)} snapshots"


def checksum(body: bytes) -> str:
    """The checksum stored beside a head."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def chunk_digest(content: bytes) -> str:
    """The name of a chunk: BLAKE2b-128 of its uncompressed content, hex."""
    return hashlib.blake2b(content, digest_size=16).hexdigest()


class ChunkCache:
    """Decoded chunks by digest, and encoded chunks by the identity of their entries.

    Args:
        max_chunks: Most chunks of each kind kept (least recently used out first).

    Not thread-safe; entries are immutable, so sharing them between states is safe.
    """

    def __init__(self, max_chunks: int = 4096) -> None:
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
        self.max_chunks = max_chunks
        self._decoded: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._encoded: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], str, bytes]] = (
            OrderedDict()
        )

    def clear(self) -> None:
        """Forget every chunk (and what they hold alive)."""
        self._decoded.clear()
        self._encoded.clear()

    def __contains__(self, digest: str) -> bool:
        return digest in self._decoded

    def decoded(self, digest: str) -> tuple[Any, ...] | None:
        """The entries of a decoded chunk, if cached."""
        entries = self._decoded.get(digest)
        if entries is not None:
            self._decoded.move_to_end(digest)
        return entries

    def remember(self, digest: str, entries: tuple[Any, ...], blob: bytes | None) -> None:
        """Keep a chunk's decoded entries (and, with ``blob``, its encoding)."""
        self._decoded[digest] = entries
        self._decoded.move_to_end(digest)
        if blob is not None:
            self._remember_encoding(entries, digest, blob)
        while len(self._decoded) > self.max_chunks:
            self._decoded.popitem(last=False)

    def encoding(self, entries: tuple[Any, ...]) -> tuple[str, bytes] | None:
        """The digest and blob of a chunk of exactly these entry objects, if encoded."""
        key = tuple(map(id, entries))
        found = self._encoded.get(key)
        if found is None:
            return None
        self._encoded.move_to_end(key)
        return found[1], found[2]

    def _remember_encoding(self, entries: tuple[Any, ...], digest: str, blob: bytes) -> None:
        # The entries are held, so their ids cannot be reused while the key exists.
        key = tuple(map(id, entries))
        self._encoded[key] = (entries, digest, blob)
        self._encoded.move_to_end(key)
        while len(self._encoded) > self.max_chunks:
            self._encoded.popitem(last=False)


_local = threading.local()


def _compress(content: bytes) -> bytes:
    # One compressor per thread, reused: setting one up costs several times more than
    # compressing a chunk.
    compressor: zstd.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstd.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor.compress(content, zstd.ZstdCompressor.FLUSH_FRAME)


def _chunks(items: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [tuple(items[i : i + CHUNK_SIZE]) for i in range(0, len(items), CHUNK_SIZE)]


def _encode_part(
    part: str, items: Sequence[Any], cache: ChunkCache, blobs: dict[str, bytes]
) -> tuple[str, ...]:
    digests = []
    for chunk in _chunks(items):
        known = cache.encoding(chunk)
        if known is None:
            content = _PARTS[part].dump_json(list(chunk))
            digest, blob = chunk_digest(content), _compress(content)
            cache.remember(digest, chunk, blob)
        else:
            digest, blob = known
        blobs[digest] = blob
        digests.append(digest)
    return tuple(digests)


def encode(state: ThreadState, rules_digest: str, cache: ChunkCache | None = None) -> Snapshot:
    """Encode ``state`` as a snapshot whose ``chunks`` hold every chunk it names.

    Args:
        state: The state.
        rules_digest: The digest of the merge rules it was folded under.
        cache: Chunks encoded before are not encoded again (default: a fresh cache).
    """
    cache = cache if cache is not None else ChunkCache()
    blobs: dict[str, bytes] = {}
    memory = {
        k: dataclasses.replace(v, history=()) if v.history else v for k, v in state.memory.items()
    }
    head = SnapshotHead(
        state=dataclasses.replace(state, conversation=(), tasks={}, routing=(), memory=memory),
        conversation=_encode_part("conversation", state.conversation, cache, blobs),
        tasks=_encode_part("tasks", list(state.tasks.values()), cache, blobs),
        routing=_encode_part("routing", state.routing, cache, blobs),
        histories={
            k: _encode_part("history", v.history, cache, blobs)
            for k, v in state.memory.items()
            if v.history
        },
    )
    body = _compress(_HEAD_ADAPTER.dump_json(head))
    return Snapshot(
        thread_id=state.thread_id,
        seq=state.version,
        high_time=state.high_time,
        rules_digest=rules_digest,
        format=FORMAT,
        checksum=checksum(body),
        body=body,
        chunks=blobs,
    )


def read_head(snapshot: Snapshot) -> SnapshotHead:
    """Check and decode a snapshot's head.

    Raises:
        SnapshotInvalid: wrong checksum, unknown format, a head that does not decompress
            or parse, or a state of another thread or seq than the snapshot claims.
    """
    where = (snapshot.thread_id, snapshot.seq)
    if snapshot.format != FORMAT:
        raise SnapshotInvalid(*where, f"format {snapshot.format}, this version reads {FORMAT}")
    if checksum(snapshot.body) != snapshot.checksum:
        raise SnapshotInvalid(*where, "checksum mismatch (the stored body is damaged)")
    try:
        head = _HEAD_ADAPTER.validate_json(zstd.decompress(snapshot.body))
    except (zstd.ZstdError, ValidationError) as exc:
        raise SnapshotInvalid(*where, f"body does not decode: {exc}") from exc
    state = head.state
    if state.thread_id != snapshot.thread_id or state.version != snapshot.seq:
        raise SnapshotInvalid(
            *where, f"body holds thread {state.thread_id!r} at seq {state.version}"
        )
    return head


def needed_chunks(
    snapshot: Snapshot, head: SnapshotHead, cache: ChunkCache | None = None
) -> list[str]:
    """The digests of the chunks ``head`` names that neither the snapshot nor the cache
    holds (fetch them from the store)."""
    histories = [d for digests in head.histories.values() for d in digests]
    wanted = dict.fromkeys((*head.conversation, *head.tasks, *head.routing, *histories))
    return [d for d in wanted if d not in snapshot.chunks and (cache is None or d not in cache)]


def decode(
    snapshot: Snapshot,
    cache: ChunkCache | None = None,
    fetched: Mapping[str, bytes] | None = None,
    *,
    head: SnapshotHead | None = None,
) -> ThreadState:
    """The state a snapshot holds.

    Args:
        snapshot: The snapshot.
        cache: Decoded chunks to reuse, and where newly decoded ones are kept.
        fetched: Chunks read from the store (see :func:`needed_chunks`).
        head: The snapshot's head, if :func:`read_head` decoded it already.

    Raises:
        SnapshotInvalid: wrong checksum, unknown format, a head that does not decompress
            or parse, a state of another thread or seq than the snapshot claims, or a
            chunk that is missing, damaged or does not fit.
    """
    head = head if head is not None else read_head(snapshot)
    cache = cache if cache is not None else ChunkCache()
    blobs = {**snapshot.chunks, **(fetched or {})}
    where = (snapshot.thread_id, snapshot.seq)

    def part(name: str, digests: tuple[str, ...]) -> list[Any]:
        items: list[Any] = []
        for digest in digests:
            entries = cache.decoded(digest)
            if entries is None:
                blob = blobs.get(digest)
                if blob is None:
                    raise SnapshotInvalid(*where, f"{name} chunk {digest} is missing")
                try:
                    content = zstd.decompress(blob)
                    if chunk_digest(content) != digest:
                        raise SnapshotInvalid(*where, f"{name} chunk {digest} is damaged")
                    entries = tuple(_PARTS[name].validate_json(content))
                except (zstd.ZstdError, ValidationError) as exc:
                    raise SnapshotInvalid(
                        *where, f"{name} chunk {digest} does not decode: {exc}"
                    ) from exc
                cache.remember(digest, entries, blob)
            items.extend(entries)
        return items

    tasks: list[TaskView] = part("tasks", head.tasks)
    memory = dict(head.state.memory)
    for key, digests in head.histories.items():
        if key not in memory:
            raise SnapshotInvalid(*where, f"history chunks of memory key {key!r}, not in it")
        memory[key] = dataclasses.replace(memory[key], history=tuple(part("history", digests)))
    return dataclasses.replace(
        head.state,
        conversation=tuple(part("conversation", head.conversation)),
        tasks={t.task_id: t for t in tasks},
        routing=tuple(part("routing", head.routing)),
        memory=memory,
    )


def to_json(state: ThreadState) -> dict[str, Any]:
    """The state as plain JSON values (what ``agentlog state --json`` prints)."""
    return _STATE.dump_python(state, mode="json")  # type: ignore[no-any-return]


def from_json(value: Any) -> ThreadState:
    """A state from :func:`to_json`'s output (``Any``: plain JSON values).

    Raises:
        pydantic.ValidationError: the value is not a thread state.
    """
    return _STATE.validate_python(value)
