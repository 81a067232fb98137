"""``ThreadCommands``: the writes projections understand, with their rules applied.

Each command reads the thread's state, decides the event (with the right version vector,
the siblings to supersede, the seq to roll back to), and appends it. Memory writes carry
the writer's causal context: the vector of the key the writer read (by default: the key
as it is now), joined with the actor's own highest counter in the thread and incremented
for the actor, so every write has a fresh dot.

Sync modes: ``lazy`` returns once the event is appended; ``immediate`` also waits until
the projection applied it and returns that state (read-your-writes). Without a running
:class:`~projections.projector.Projector`, ``immediate`` folds the state itself.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from eventstore import NO_THREAD, WrongExpectedVersion, new_event
from eventstore.envelope import AppendResult, NewEvent
from eventstore.payloads import (
    MemoryDelete,
    MemoryResolved,
    MemorySet,
    Payload,
    ThreadForked,
    ThreadRolledBack,
    ValueKind,
)
from eventstore.port import EventLog
from projections.errors import (
    NoConflict,
    PointNotFound,
    SiblingNotFound,
    ThreadExists,
    ThreadNotFound,
)
from projections.memory import KeyState
from projections.projector import Projector
from projections.reader import StateReader
from projections.state import ThreadState
from projections.vectors import increment, join

SyncMode = Literal["immediate", "lazy"]
SYNC_MODES: tuple[SyncMode, ...] = ("immediate", "lazy")


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    """What a command did: the append, and (``immediate``) the state that includes it."""

    append: AppendResult
    state: ThreadState | None


def actor_counter(state: ThreadState, actor: str) -> int:
    """The highest counter ``actor`` has used in the thread's memory vectors.

    The siblings suffice: every write of a key is at or below one of its siblings (the
    maximal writes), so no superseded write in a history has a higher entry.
    """
    best = 0
    for key in state.memory.values():
        for write in key.siblings:
            best = max(best, write.vector.get(actor, 0))
    return best


def next_vector(
    state: ThreadState, key: str, actor: str, context: Mapping[str, int] | None = None
) -> dict[str, int]:
    """The vector of ``actor``'s next write of ``key``.

    Args:
        state: The thread's current state.
        key: The key written.
        actor: The writer.
        context: What the writer had read of the key (a vector); ``None``: the key now.
    """
    seen = state.memory.get(key)
    base = dict(context) if context is not None else (seen.vector if seen else {})
    own = actor_counter(state, actor)
    return increment(join(base, {actor: own} if own else {}), actor)


class ThreadCommands:
    """Memory writes, conflict resolution, rollback and fork.

    Args:
        log: The event log (open).
        reader: Reads states (its log must be ``log``).
        projector: The running projector, for ``immediate`` writes; optional.
        sync: The default sync mode.
        sync_timeout: Seconds an ``immediate`` write waits for the projector.
    """

    def __init__(
        self,
        log: EventLog,
        reader: StateReader,
        *,
        projector: Projector | None = None,
        sync: SyncMode = "immediate",
        sync_timeout: float = 10.0,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync mode {sync!r}: use one of {', '.join(SYNC_MODES)}")
        self.log = log
        self.reader = reader
        self.projector = projector
        self.sync = sync
        self.sync_timeout = sync_timeout

    async def _append(
        self,
        thread_id: str,
        event: NewEvent,
        expected_version: int | None,
        sync: SyncMode | None,
    ) -> WriteResult:
        result = await self.log.append(thread_id, [event], expected_version=expected_version)
        if (sync or self.sync) == "lazy":
            return WriteResult(result, None)
        if self.projector is not None:
            started = time.perf_counter()
            await self.projector.wait_applied(
                thread_id, result.positions[-1], within=self.sync_timeout
            )
            self.projector.observer.synced(time.perf_counter() - started)
        state = await self.reader.state(thread_id, min_version=result.version)
        return WriteResult(result, state)

    async def set(
        self,
        thread_id: str,
        key: str,
        value_json: str,
        *,
        actor: str,
        kind: ValueKind = "value",
        context: Mapping[str, int] | None = None,
        sync: SyncMode | None = None,
        occurred_at: datetime | None = None,
    ) -> WriteResult:
        """Write a memory key (``memory.Set``).

        Args:
            thread_id: The thread.
            key: The key.
            value_json: The new value, as JSON text.
            actor: The writer.
            kind: The value's kind (how ``merge`` treats it).
            context: The vector of the key as the writer last read it; ``None``: as it
                is now (the write then follows every earlier one).
            sync: ``immediate`` or ``lazy``; default: the commands' mode.
            occurred_at: The event time (default: now).
        """
        return await self._memory(
            thread_id,
            MemorySet(key=key, value_json=value_json, kind=kind),
            actor,
            context,
            sync,
            occurred_at,
        )

    async def delete(
        self,
        thread_id: str,
        key: str,
        *,
        actor: str,
        context: Mapping[str, int] | None = None,
        sync: SyncMode | None = None,
        occurred_at: datetime | None = None,
    ) -> WriteResult:
        """Delete a memory key (``memory.Delete``); arguments as for :meth:`set`."""
        return await self._memory(
            thread_id, MemoryDelete(key=key), actor, context, sync, occurred_at
        )

    async def _memory(
        self,
        thread_id: str,
        payload: MemorySet | MemoryDelete,
        actor: str,
        context: Mapping[str, int] | None,
        sync: SyncMode | None,
        occurred_at: datetime | None,
    ) -> WriteResult:
        state = await self.reader.state(thread_id)
        vector = next_vector(state, payload.key, actor, context)
        event = new_event(payload, actor=actor, version_vector=vector, occurred_at=occurred_at)
        return await self._append(thread_id, event, None, sync)

    async def resolve(
        self,
        thread_id: str,
        key: str,
        *,
        actor: str,
        choose: str | None = None,
        value_json: str | None = None,
        kind: ValueKind | None = None,
        sync: SyncMode | None = None,
    ) -> WriteResult:
        """Settle a ``manual`` conflict with ``memory.Resolved``.

        Args:
            thread_id: The thread.
            key: The key in conflict.
            actor: Who decides.
            choose: Keep the value of this sibling (its event id); or
            value_json: Supply a new value (JSON text).
            kind: The supplied value's kind (default: the chosen sibling's, or ``value``).
            sync: ``immediate`` or ``lazy``.

        Raises:
            NoConflict: the key is not in conflict.
            SiblingNotFound: ``choose`` names no sibling.
            ValueError: not exactly one of ``choose`` and ``value_json``.
            WrongExpectedVersion: someone wrote the thread meanwhile (read and retry).
        """
        if (choose is None) == (value_json is None):
            raise ValueError("give exactly one of choose (a sibling's event id) or value_json")
        state = await self.reader.state(thread_id)
        current: KeyState | None = state.memory.get(key)
        if current is None or not current.conflicted:
            raise NoConflict(thread_id, key)
        ids = tuple(s.event_id for s in current.siblings)
        if choose is not None:
            chosen = next((s for s in current.siblings if s.event_id == choose), None)
            if chosen is None:
                raise SiblingNotFound(thread_id, key, choose, ids)
            value_json, kind = chosen.value_json, kind or chosen.kind
        payload = MemoryResolved(
            key=key,
            value_json=value_json,
            kind=kind or "value",
            chosen_event_id=choose,
            superseded_event_ids=ids,
        )
        vector = next_vector(state, key, actor)
        event = new_event(payload, actor=actor, version_vector=vector)
        return await self._append(thread_id, event, state.version, sync)

    async def rollback(
        self,
        thread_id: str,
        *,
        to_seq: int,
        reason: str,
        actor: str,
        sync: SyncMode | None = None,
    ) -> WriteResult:
        """Roll the live state back to the state after ``to_seq`` (``thread.RolledBack``).

        Nothing is deleted: the rollback is an event, later events apply on top of it, and
        rolling back to a seq after an earlier rollback undoes that one.

        Raises:
            ThreadNotFound: the thread has no events.
            PointNotFound: ``to_seq`` is not before the thread's version, or negative.
            WrongExpectedVersion: someone wrote the thread meanwhile (the message says
                its version now); look again and retry.
        """
        version = await self.log.version(thread_id)
        if version == 0:
            raise ThreadNotFound(thread_id)
        if not 0 <= to_seq < version:
            raise PointNotFound(
                thread_id,
                f"seq {to_seq}",
                f"a rollback goes to a seq from 0 to {version - 1} (the version is {version})",
            )
        if not reason.strip():
            raise ValueError("a rollback needs a reason (it is kept in the history)")
        event = new_event(ThreadRolledBack(to_seq=to_seq, reason=reason), actor=actor)
        return await self._append(thread_id, event, version, sync)

    async def fork(
        self,
        thread_id: str,
        *,
        at_seq: int,
        into: str,
        actor: str,
        reason: str | None = None,
        sync: SyncMode | None = None,
    ) -> WriteResult:
        """Start thread ``into`` as a copy of ``thread_id`` after event ``at_seq``.

        The new thread's first event is ``thread.Forked`` (its lineage); its state starts
        as the source's state at ``at_seq``, and the source is not changed.

        Raises:
            ThreadNotFound: the source has no events.
            PointNotFound: ``at_seq`` is outside 1..version of the source.
            ThreadExists: ``into`` already has events.
        """
        version = await self.log.version(thread_id)
        if version == 0:
            raise ThreadNotFound(thread_id)
        if into == thread_id:
            raise ValueError(f"a fork needs a new thread id, not {thread_id!r} itself")
        if not 1 <= at_seq <= version:
            raise PointNotFound(thread_id, f"seq {at_seq}", f"the thread has seqs 1 to {version}")
        payload: Payload = ThreadForked(
            source_thread_id=thread_id, source_seq=at_seq, reason=reason
        )
        event = new_event(payload, actor=actor)
        try:
            return await self._append(into, event, NO_THREAD, sync)
        except WrongExpectedVersion as exc:
            raise ThreadExists(into, exc.current) from exc
