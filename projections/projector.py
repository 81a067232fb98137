"""``Projector``: follows the log and keeps thread states, snapshots and a checkpoint.

The projector subscribes to the log from its checkpoint and applies each event to its
thread's state (hot states live in the reader's :class:`~projections.cache.StateCache`;
a cold one is loaded from its snapshot plus the log). An event at or below the state's
version was applied before and is skipped, so redelivery (at-least-once) has exactly one
effect. Snapshots are saved at every multiple of the reader's ``snapshot_every``.

The checkpoint (the position of the last event processed) is saved every
``checkpoint_interval`` seconds and on close. After a crash the projector resumes from
the checkpoint: states come from snapshots and the log (the truth), so nothing is lost
and nothing is applied twice.

When a ``manual`` key gets concurrent siblings while the projector is at the thread's
head, it appends one ``memory.Conflict`` listing them. Its event id is derived from the
thread, key and siblings, so however many projectors see the conflict, the log keeps one.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from eventstore import new_event
from eventstore.envelope import RecordedEvent
from eventstore.payloads import (
    MemoryConflict,
    MemoryDelete,
    MemoryMerged,
    MemoryResolved,
    MemorySet,
    Sibling,
)
from eventstore.port import EventLog
from projections.errors import ProjectionClosed, SyncTimeout
from projections.memory import KeyState
from projections.observe import ProjectionObserver
from projections.reader import StateReader
from projections.state import ThreadState

log = logging.getLogger(__name__)

_CONFLICT_NAMESPACE = uuid.UUID("5d0c7d2e-8d43-4f55-9a37-2f1b0c6e4a10")
_MEMORY = (MemorySet, MemoryDelete, MemoryMerged, MemoryResolved)


def conflict_event_id(thread_id: str, key: KeyState) -> str:
    """The id of the ``memory.Conflict`` reporting ``key``'s current siblings."""
    return str(uuid.uuid5(_CONFLICT_NAMESPACE, f"{thread_id}\n{key.conflict_id}"))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Projector:
    """Keeps thread states up to date with the log.

    Args:
        log: The event log (open).
        reader: Reads and folds states; its store keeps snapshots and the checkpoint.
        name: The checkpoint's name (one per projector role).
        emit_conflicts: Append ``memory.Conflict`` for new ``manual`` conflicts.
        checkpoint_interval: Seconds between checkpoint saves while events flow.
        clock: Current time (for lag); injected so tests control it.

    Use it as ``async with Projector(...) as projector:``; it runs until the block ends.
    """

    def __init__(
        self,
        log: EventLog,
        reader: StateReader,
        *,
        name: str = "default",
        emit_conflicts: bool = True,
        checkpoint_interval: float = 1.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if reader.cache is None:
            raise ValueError("the projector keeps hot states in the reader's cache; give it one")
        self.log = log
        self.reader = reader
        self.cache = reader.cache
        self.name = name
        self.emit_conflicts = emit_conflicts
        self.checkpoint_interval = checkpoint_interval
        self.observer: ProjectionObserver = reader.observer
        self._clock = clock
        self._state = "unopened"
        self._tg: anyio.abc.TaskGroup | None = None
        self.applied_position = 0
        self._saved_position = 0
        self._last_save = 0.0
        self._progress = anyio.Event()
        self._reported: OrderedDict[str, None] = OrderedDict()
        self.failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"Projector({self.name!r}, {self._state}, at position {self.applied_position})"

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise ProjectionClosed(repr(self), f"{self._state} and cannot be restarted")
        self._state = "opening"
        store = self.reader.store
        start = await store.checkpoint(self.name) if store is not None else 0
        self.applied_position = self._saved_position = start
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._run, start + 1)
        except BaseException:
            self._state = "closed"
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            raise
        self._state = "open"
        log.info("projector %r started after log position %d", self.name, start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following the log and save the checkpoint. Idempotent.

        The final checkpoint save is shielded from cancellation (at most 10 s).
        """
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closing"
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            self._state = "closed"
            self._progress.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._save_checkpoint()
            log.info("projector %r stopped at log position %d", self.name, self.applied_position)

    # --- following the log -------------------------------------------------------------

    async def _run(self, first: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            async for event in self.log.subscribe(first):
                await self._process(event)
        except Exception as exc:  # the projector's outermost loop: report, then stop
            self.failure = exc
            log.exception("projector %r stopped on an error", self.name)
            self._progress.set()

    async def _process(self, event: RecordedEvent) -> None:
        thread_id = event.thread_id
        state = self.cache.get(thread_id)
        if state is None:
            state = await self.reader.load(thread_id, to_seq=event.seq - 1)
        applied = duplicates = 0
        if event.seq <= state.version:
            duplicates = 1
        else:
            if event.seq > state.version + 1:
                state = await self.reader.advance(state, to_seq=event.seq - 1)
            before = state
            state = await self.reader.fold_events(state, [event])
            self.cache.put(state)
            applied = 1
            if isinstance(event.payload, _MEMORY):
                await self._after_memory(before, state, event)
        self.observer.applied(thread_id, applied, duplicates)
        self.applied_position = event.position
        self._progress.set()
        self._progress = anyio.Event()
        now = anyio.current_time()
        if now - self._last_save >= self.checkpoint_interval:
            self._last_save = now
            await self._save_checkpoint()
            head = await self.log.head()
            behind = max(0, head - self.applied_position)
            age = (self._clock() - event.occurred_at).total_seconds() if behind else 0.0
            self.observer.lag(behind, max(0.0, age))

    async def _after_memory(
        self, before: ThreadState, after: ThreadState, event: RecordedEvent
    ) -> None:
        key_name: str = event.payload.key  # type: ignore[attr-defined]  # every memory op has a key
        key = after.memory.get(key_name)
        was = before.memory.get(key_name)
        if isinstance(event.payload, MemoryResolved) and was is not None and was.conflicted:
            if key is None or not key.conflicted:
                self.observer.conflict_resolved(event.thread_id, key_name)
        if key is None or not key.conflicted or not self.emit_conflicts:
            return
        conflict_id = conflict_event_id(event.thread_id, key)
        if conflict_id in self._reported:
            return
        if await self.log.version(event.thread_id) != after.version:
            return  # catching up: a later event may settle it; report it at the head
        payload = MemoryConflict(
            key=key_name,
            siblings=tuple(
                Sibling(
                    event_id=s.event_id,
                    actor=s.actor,
                    value_json=s.value_json,
                    kind=s.kind,
                    version_vector=dict(s.vector),
                    occurred_at=s.occurred_at,
                )
                for s in key.siblings
            ),
        )
        report = new_event(
            payload,
            actor=f"projector:{self.name}",
            event_id=conflict_id,
            causation_id=event.event_id,
            correlation_id=event.correlation_id,
        )
        result = await self.log.append(event.thread_id, [report])
        self._reported[conflict_id] = None
        while len(self._reported) > 10_000:
            self._reported.popitem(last=False)
        if not result.deduplicated:
            self.observer.conflict_detected(event.thread_id, key_name)
            log.info(
                "memory key %r of thread %r is in conflict (%d siblings); reported at seq %d",
                key_name,
                event.thread_id,
                len(key.siblings),
                result.first_seq,
            )

    async def _save_checkpoint(self) -> None:
        store = self.reader.store
        if store is None or self.applied_position <= self._saved_position:
            return
        await store.save_checkpoint(self.name, self.applied_position)
        self._saved_position = self.applied_position

    # --- waiting -----------------------------------------------------------------------

    async def wait_applied(self, thread_id: str, position: int, *, within: float) -> None:
        """Return once the event at log ``position`` (of ``thread_id``) has been applied.

        Raises:
            SyncTimeout: not applied within ``within`` seconds.
            ProjectionClosed: the projector stopped (or failed) before applying it.
        """
        with anyio.move_on_after(within):
            while self.applied_position < position:
                if self._state not in ("open", "opening") or self.failure is not None:
                    raise ProjectionClosed(repr(self), self._state)
                await self._progress.wait()
            return
        raise SyncTimeout(thread_id, position, within)

    async def catch_up(self, *, within: float = 60.0) -> int:
        """Wait until every event in the log when called has been applied.

        Returns:
            The log position reached.

        Raises:
            SyncTimeout: the projector did not get there within ``within`` seconds.
        """
        head = await self.log.head()
        await self.wait_applied("(all threads)", head, within=within)
        await self._save_checkpoint()
        return head
