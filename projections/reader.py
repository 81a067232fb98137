"""``StateReader``: thread state from snapshots plus the log, at the head or any point.

``state(thread)`` is the live state; ``state_at(thread, seq=|at=|event_id=)`` the state as
of a point: the nearest usable snapshot at or before the point, plus the events after it
up to the point. Rollbacks and forks in the history are followed (they need the state at
another point, found the same way). Folding past a multiple of ``snapshot_every`` saves a
snapshot there, so whoever reads first fills the cache for the next reader.

A snapshot that fails its checksum, has an unknown format or holds the wrong state is
skipped with a warning and the next older one is tried; without any, the fold starts
from the thread's first event.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from eventstore.envelope import RecordedEvent
from eventstore.port import EventLog
from projections.cache import StateCache
from projections.errors import PointNotFound, ProjectionError, ThreadNotFound
from projections.fold import apply_fork, apply_rollback, fold, needs
from projections.memory import MergeRules
from projections.observe import CountingObserver, ProjectionObserver
from projections.port import SnapshotStore
from projections.serial import (
    ChunkCache,
    Snapshot,
    SnapshotInvalid,
    decode,
    encode,
    needed_chunks,
    read_head,
)
from projections.state import ThreadState

log = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_EVERY = 100
_FOLDED = ""  # the "checksum" of a remembered state this reader folded itself
MAX_LINEAGE_DEPTH = 64
"""Most nested rollback/fork lookups one read follows (guards against forged cycles)."""


class LineageTooDeep(ProjectionError):
    """Following rollbacks and forks went deeper than :data:`MAX_LINEAGE_DEPTH`."""

    def __init__(self, thread_id: str, depth: int) -> None:
        self.thread_id = thread_id
        self.depth = depth
        super().__init__(
            f"thread {thread_id!r}: its rollbacks and forks nest deeper than {depth} "
            "(a cycle of forks?)"
        )


class StateReader:
    """Reads thread state from a log and a snapshot store.

    Args:
        log: The event log (open).
        store: Snapshots (open), or ``None`` to fold from the first event every time.
        rules: Merge policy per memory key.
        snapshot_every: Save a snapshot at every multiple of this many events (0: never).
        cache: Hot live states; ``None`` for no cache.
        save_snapshots: Whether folds save snapshots into ``store``.
        observer: Told about snapshots saved and rejected.
        chunks: Decoded and encoded snapshot chunks to reuse (default: a cache of 4096).
        decoded_states: Most decoded snapshots kept, to start folds from without decoding.
        cached_events: Most decoded events kept for reads of past ranges (``state_at``,
            rollback targets); 0 turns the cache off.

    Concurrency: safe to use from many tasks of one event loop.
    """

    def __init__(
        self,
        log: EventLog,
        store: SnapshotStore | None,
        rules: MergeRules,
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        cache: StateCache | None = None,
        save_snapshots: bool = True,
        observer: ProjectionObserver | None = None,
        chunks: ChunkCache | None = None,
        decoded_states: int = 256,
        cached_events: int = 20_000,
    ) -> None:
        if snapshot_every < 0:
            raise ValueError(f"snapshot_every must be 0 or more, got {snapshot_every}")
        self.log = log
        self.store = store
        self.rules = rules
        self.snapshot_every = snapshot_every
        self.cache = cache
        self.save_snapshots = save_snapshots and store is not None and snapshot_every > 0
        self.observer: ProjectionObserver = observer or CountingObserver()
        self.chunks = chunks if chunks is not None else ChunkCache()
        self._stored: OrderedDict[str, None] = OrderedDict()  # chunks known to be stored
        # Decoded snapshots (and folded past states) under this reader's rules, by
        # (thread, seq) -> (checksum, state): their entries are shared with the chunk
        # cache, so each costs little more than its head.
        self._decoded: OrderedDict[tuple[str, int], tuple[str, ThreadState]] = OrderedDict()
        self._decoded_seqs: dict[str, list[int]] = {}  # thread -> seqs in _decoded, sorted
        self.decoded_states = decoded_states
        self._events: OrderedDict[tuple[str, int], RecordedEvent] = OrderedDict()
        self.cached_events = cached_events
        self.snapshots_loaded = 0

    # --- the live state ----------------------------------------------------------------

    async def state(self, thread_id: str, *, min_version: int = 0) -> ThreadState:
        """The thread's state after every event in the log (an empty state if it has none).

        Args:
            thread_id: The thread.
            min_version: Never answer with an older state than this (read-your-writes:
                pass the version your append returned).
        """
        if self.cache is not None:
            cached = self.cache.get(thread_id, min_version)
            if cached is not None:
                return await self.advance(cached)
        state = await self._build(thread_id, None, None, 0)
        if self.cache is not None:
            self.cache.put(state)
        return state

    async def load(self, thread_id: str, to_seq: int | None = None) -> ThreadState:
        """The state after the thread's events up to ``to_seq`` (all when ``None``), from
        the nearest snapshot; no cache, no checks (an unknown thread is empty)."""
        return await self._build(thread_id, to_seq, None, 0)

    async def advance(self, state: ThreadState, to_seq: int | None = None) -> ThreadState:
        """``state`` with the log's later events folded in (up to ``to_seq`` if given)."""
        if to_seq is not None and to_seq <= state.version:
            return state
        events = await self.log.read_thread(state.thread_id, state.version + 1, to_seq)
        return await self._fold_events(state, events, 0)

    # --- points in time ----------------------------------------------------------------

    async def state_at(
        self,
        thread_id: str,
        *,
        seq: int | None = None,
        at: datetime | None = None,
        event_id: str | None = None,
    ) -> ThreadState:
        """The thread's state as of a point: after event ``seq``, after the events that
        occurred up to ``at`` (a prefix of the thread), or after event ``event_id``.

        Give exactly one point. ``seq=0`` (or a time before the first event) is the empty
        state.

        Raises:
            ThreadNotFound: the thread has no events.
            PointNotFound: the seq is past the thread's end or negative, or the event id
                is not in this thread.
            ValueError: not exactly one point was given.
        """
        if sum(p is not None for p in (seq, at, event_id)) != 1:
            raise ValueError("give exactly one of seq, at or event_id")
        if event_id is not None:
            seq = await self.seq_of(thread_id, event_id)  # the thread exists, seq is in it
            return await self._build(thread_id, seq, None, 0)
        if seq is not None and seq < 0:
            raise PointNotFound(thread_id, f"seq {seq}", "seqs start at 1 (0: before the first)")
        state = await self._build(thread_id, seq, at, 0)
        # A state short of the point means the thread ends before it (the fold read to the
        # end); only then, and for an empty answer, is the version looked up.
        if (seq is not None and state.version < seq) or state.version == 0:
            version = await self.log.version(thread_id)
            if version == 0:
                raise ThreadNotFound(thread_id)
            if seq is not None and seq > version:
                raise PointNotFound(thread_id, f"seq {seq}", f"the thread has seqs 1 to {version}")
        return state

    async def seq_of(self, thread_id: str, event_id: str) -> int:
        """The seq of ``event_id`` in ``thread_id``.

        Raises:
            PointNotFound: no such event, or it belongs to another thread.
        """
        found = await self.log.read_event(event_id)
        if found is None:
            raise PointNotFound(thread_id, f"event {event_id}", "no event has this id")
        if found.thread_id != thread_id:
            raise PointNotFound(
                thread_id, f"event {event_id}", f"it belongs to thread {found.thread_id!r}"
            )
        return found.seq

    async def scratch(self, thread_id: str, to_seq: int | None = None) -> ThreadState:
        """The state folded from the first event, using no snapshot at all (for verify)."""
        return await self._scratch(thread_id, to_seq, 0)

    async def _scratch(self, thread_id: str, to_seq: int | None, depth: int) -> ThreadState:
        events = await self.log.read_thread(thread_id, 1, to_seq)
        return await self._fold_events(
            ThreadState(thread_id=thread_id), events, depth, snapshots=False
        )

    async def scratch_at(self, thread_id: str, seqs: Sequence[int]) -> dict[int, ThreadState]:
        """States folded from the first event (no snapshots) at each of ``seqs``."""
        wanted = sorted({s for s in seqs if s >= 0})
        if not wanted:
            return {}
        events = await self.log.read_thread(thread_id, 1, wanted[-1])
        state = ThreadState(thread_id=thread_id)
        out: dict[int, ThreadState] = {}
        for seq in wanted:
            # seqs are gap-free from 1, so the events after state.version start at that index
            state = await self._fold_events(state, events[state.version : seq], 0, snapshots=False)
            out[seq] = state
        return out

    # --- internals ---------------------------------------------------------------------

    async def _build(
        self, thread_id: str, to_seq: int | None, until: datetime | None, depth: int
    ) -> ThreadState:
        state = await self._nearest(thread_id, to_seq, until)
        if to_seq is not None and state.version >= to_seq:
            return state
        if to_seq is None or until is not None:
            events = await self.log.read_thread(thread_id, state.version + 1, to_seq, until=until)
            return await self._fold_events(state, events, depth)
        events = await self._range(thread_id, state.version + 1, to_seq)
        state = await self._fold_events(state, events, depth)
        if self.store is not None and events and state.version == to_seq:
            # A past point never changes: the next read near it can start here.
            self._remember_decoded((thread_id, to_seq), _FOLDED, state)
        return state

    async def _range(self, thread_id: str, first: int, last: int) -> list[RecordedEvent]:
        """Events ``first..last`` of a thread, from the event cache when it has them all.

        An event at a seq never changes (the log is append-only), so a cached one is
        always right; ranges up to the thread's end are always read from the log.
        """
        if not self.cached_events:
            return await self.log.read_thread(thread_id, first, last)
        cache = self._events
        known: list[RecordedEvent] = []
        seq = first
        while seq <= last and (hit := cache.get((thread_id, seq))) is not None:
            cache.move_to_end((thread_id, seq))
            known.append(hit)
            seq += 1
        if seq > last:
            return known
        rest = await self.log.read_thread(thread_id, seq, last)
        for event in rest:
            cache[(thread_id, event.seq)] = event
        while len(cache) > self.cached_events:
            cache.popitem(last=False)
        return known + rest

    async def _nearest(
        self, thread_id: str, to_seq: int | None, until: datetime | None
    ) -> ThreadState:
        if self.store is None:
            return ThreadState(thread_id=thread_id)
        digest = self.rules.digest
        if to_seq is not None and until is None and self.snapshot_every:
            # A state this reader decoded or folded, at or after the last snapshot point
            # before ``to_seq``, is as near as anything the store has (and any earlier
            # state folds to the same result), so the store is not asked.
            seqs = self._decoded_seqs.get(thread_id, [])
            i = bisect.bisect_right(seqs, to_seq) - 1
            if i >= 0 and seqs[i] >= to_seq - to_seq % self.snapshot_every:
                key = (thread_id, seqs[i])
                self._decoded.move_to_end(key)
                self.snapshots_loaded += 1
                return self._decoded[key][1]
        bound = to_seq
        while True:
            snapshot = await self.store.latest(thread_id, digest, max_seq=bound, until=until)
            if snapshot is None:
                return ThreadState(thread_id=thread_id)
            key = (thread_id, snapshot.seq)
            cached = self._decoded.get(key)
            if cached is not None and cached[0] in (snapshot.checksum, _FOLDED):
                self._decoded.move_to_end(key)
                self.snapshots_loaded += 1
                return cached[1]
            try:
                state = await self.decode_snapshot(snapshot)
            except SnapshotInvalid as exc:
                self.observer.snapshot_rejected(thread_id, exc.detail)
                log.warning("ignoring a snapshot, rebuilding from the log instead: %s", exc)
                bound = snapshot.seq - 1
                continue
            self.snapshots_loaded += 1
            self._remember_decoded(key, snapshot.checksum, state)
            return state

    def _remember_decoded(self, key: tuple[str, int], checksum: str, state: ThreadState) -> None:
        if key not in self._decoded:
            bisect.insort(self._decoded_seqs.setdefault(key[0], []), key[1])
        self._decoded[key] = (checksum, state)
        self._decoded.move_to_end(key)
        while len(self._decoded) > self.decoded_states:
            (thread_id, seq), _ = self._decoded.popitem(last=False)
            seqs = self._decoded_seqs.get(thread_id, [])
            if seq in seqs:
                seqs.remove(seq)
            if not seqs:
                self._decoded_seqs.pop(thread_id, None)

    async def _fold_events(
        self,
        state: ThreadState,
        events: Sequence[RecordedEvent],
        depth: int,
        *,
        snapshots: bool = True,
        save: Callable[[ThreadState], Awaitable[None]] | None = None,
    ) -> ThreadState:
        """Fold ``events`` into ``state``, following rollbacks and forks, saving snapshots
        (with ``save``, default :meth:`save`)."""
        save = save if save is not None else self.save
        every = self.snapshot_every if (snapshots and self.save_snapshots) else 0
        remaining = list(events)
        while remaining:
            cut = len(remaining)
            if every:
                boundary = (state.version // every + 1) * every
                cut = next((i + 1 for i, e in enumerate(remaining) if e.seq >= boundary), cut)
            state, used = fold(state, remaining[:cut], self.rules)
            if used < cut:
                event = remaining[used]
                state = await self._follow(state, event, depth, snapshots=snapshots)
                remaining = remaining[used + 1 :]
            else:
                remaining = remaining[cut:]
            if every and state.version % every == 0 and state.version > 0:
                await save(state)
        return state

    async def _follow(
        self, state: ThreadState, event: RecordedEvent, depth: int, *, snapshots: bool
    ) -> ThreadState:
        need = needs(state, event)
        assert need is not None  # fold stopped here because the event needs a state
        if depth >= MAX_LINEAGE_DEPTH:
            raise LineageTooDeep(event.thread_id, MAX_LINEAGE_DEPTH)
        if snapshots:
            target = await self._build(need.thread_id, need.seq, None, depth + 1)
        else:
            target = await self._scratch(need.thread_id, need.seq, depth + 1)
        if need.thread_id == event.thread_id:
            return apply_rollback(state, target, event)
        return apply_fork(target, event)

    async def fold_events(
        self,
        state: ThreadState,
        events: Sequence[RecordedEvent],
        *,
        save: Callable[[ThreadState], Awaitable[None]] | None = None,
    ) -> ThreadState:
        """Fold ``events`` (the thread's next ones, in seq order) into ``state``, following
        rollbacks and forks and saving snapshots at multiples of ``snapshot_every``.

        Args:
            state: The state to start from.
            events: The thread's events after ``state``.
            save: Called with the state at each multiple instead of :meth:`save` (a bulk
                writer batches them; it should store ``snapshot_of(state)``).

        Raises:
            GapInThread: the events do not continue ``state``.
        """
        return await self._fold_events(state, events, 0, save=save)

    async def decode_snapshot(self, snapshot: Snapshot) -> ThreadState:
        """The state in ``snapshot``, fetching the chunks it needs from the store.

        Raises:
            SnapshotInvalid: the snapshot is damaged, of another format, or a chunk is
                missing or damaged.
        """
        head = read_head(snapshot)
        missing = needed_chunks(snapshot, head, self.chunks)
        fetched = await self.store.load_chunks(missing) if missing and self.store else {}
        state = decode(snapshot, self.chunks, fetched, head=head)
        self._known(fetched)
        return state

    def _known(self, digests: Iterable[str]) -> None:
        for digest in digests:
            self._stored[digest] = None
            self._stored.move_to_end(digest)
        while len(self._stored) > 4 * self.chunks.max_chunks:
            self._stored.popitem(last=False)

    def snapshot_of(self, state: ThreadState) -> Snapshot | None:
        """The snapshot of ``state`` to store (``None`` if this reader saves none), without
        the chunks this reader stored or loaded before. Once it is stored, call
        :meth:`saved`."""
        if not self.save_snapshots or self.store is None or state.version == 0:
            return None
        snapshot = encode(state, self.rules.digest, self.chunks)
        new: dict[str, bytes] = {}
        for digest, blob in snapshot.chunks.items():
            if digest in self._stored:
                self._stored.move_to_end(digest)
            else:
                new[digest] = blob
        return dataclasses.replace(snapshot, chunks=new)

    async def save(self, state: ThreadState) -> None:
        """Save a snapshot of ``state`` (if this reader saves snapshots); chunks this
        reader stored or loaded before are not sent again."""
        snapshot = self.snapshot_of(state)
        if snapshot is not None and self.store is not None:
            await self.store.save(snapshot)
            self.saved(snapshot)

    def saved(self, snapshot: Snapshot) -> None:
        """Note that ``snapshot`` (from :meth:`snapshot_of`) was stored: its chunks are not
        sent again, and the observer is told."""
        self._known(snapshot.chunks)
        size = len(snapshot.body) + sum(len(b) for b in snapshot.chunks.values())
        self.observer.snapshot_saved(snapshot.thread_id, snapshot.seq, size)
