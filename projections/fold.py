"""Folding events into thread state: the projection's pure transition function.

:func:`fold` applies a thread's events in seq order. Two event types need a state the
events themselves do not carry, so the fold stops at them and the caller (which can read
the log) continues with the matching function:

* ``thread.RolledBack{to_seq}``: the live state becomes the thread's state at ``to_seq``
  plus what follows; :func:`apply_rollback` takes that state;
* ``thread.Forked{source_thread_id, source_seq}`` (seq 1 of a fork): the thread starts
  as the source's state at ``source_seq``; :func:`apply_fork` takes it.

:func:`needs` tells which state such an event needs. Events already applied (seq at or
below the state's version) are skipped, so redelivered duplicates change nothing. Events
that make no sense (a rollback to a later seq, a fork event after seq 1) are kept in the
history but change nothing. No I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventstore.envelope import RecordedEvent
from eventstore.payloads import (
    Artifact,
    MemoryDelete,
    MemoryMerged,
    MemoryResolved,
    MemorySet,
    Message,
    RoutingDecided,
    RoutingEscalated,
    RoutingFeedback,
    TaskStatusUpdate,
    ThreadForked,
    ThreadRolledBack,
)
from projections.errors import GapInThread
from projections.memory import KeyState, MergeRules, Write, WriteSource, apply_write
from projections.state import (
    ArtifactView,
    ConversationEntry,
    ForkRecord,
    Lineage,
    RollbackRecord,
    RoutingRecord,
    TaskStatusEntry,
    TaskView,
    ThreadState,
)
from projections.vectors import LOG_CLOCK, normalized


@dataclasses.dataclass(frozen=True, slots=True)
class Needed:
    """The state an event needs: ``thread_id`` as of ``seq``."""

    thread_id: str
    seq: int


def needs(state: ThreadState, event: RecordedEvent) -> Needed | None:
    """Which other state ``event`` needs before it can be applied to ``state``, if any."""
    return _needs(state.version, event)


def _needs(version: int, event: RecordedEvent) -> Needed | None:
    payload = event.payload
    if event.seq <= version:
        return None
    if isinstance(payload, ThreadRolledBack) and 0 <= payload.to_seq < event.seq:
        return Needed(event.thread_id, payload.to_seq)
    if (
        isinstance(payload, ThreadForked)
        and event.seq == 1
        and payload.source_seq >= 0
        and payload.source_thread_id != event.thread_id
    ):
        return Needed(payload.source_thread_id, payload.source_seq)
    return None


def fold(
    state: ThreadState, events: Sequence[RecordedEvent], rules: MergeRules
) -> tuple[ThreadState, int]:
    """Apply ``events`` (the thread's, in seq order) to ``state``.

    Args:
        state: The state to start from.
        events: Events of ``state.thread_id``, in seq order; ones already applied are
            skipped.
        rules: The merge policy of each memory key.

    Returns:
        The new state, and how many of ``events`` were consumed: ``len(events)``, or the
        index of the first event :func:`needs` another state for (not applied).

    Raises:
        GapInThread: an event's seq skips past ``state.version + 1``.
        ValueError: an event of another thread was passed.
    """
    builder = _Builder(state, rules)
    for index, event in enumerate(events):
        if event.thread_id != state.thread_id:
            _check_next(state, event)  # raises: another thread's event
        if event.seq <= builder.version:
            continue
        # Before _needs: a rollback past a gap is a gap, not a stop.
        if event.seq != builder.version + 1:
            raise GapInThread(state.thread_id, builder.version + 1, event.seq)
        if _needs(builder.version, event) is not None:
            return builder.build(), index
        builder.apply(event)
    return builder.build(), len(events)


def apply_rollback(current: ThreadState, target: ThreadState, event: RecordedEvent) -> ThreadState:
    """The state after ``event`` (a ``thread.RolledBack``) given the state at its ``to_seq``.

    Content (conversation, memory, tasks, routing) comes from ``target``; the lineage keeps
    every rollback, including this one, so audit sees what was undone.
    """
    payload = event.payload
    assert isinstance(payload, ThreadRolledBack)
    _check_next(current, event)
    record = RollbackRecord(
        seq=event.seq,
        event_id=event.event_id,
        actor=event.actor,
        occurred_at=event.occurred_at,
        to_seq=payload.to_seq,
        reason=payload.reason,
    )
    return dataclasses.replace(
        target,
        thread_id=current.thread_id,
        tenant=current.tenant,
        version=event.seq,
        updated_at=event.occurred_at,
        high_time=_later(current.high_time, event.occurred_at),
        lineage=Lineage(
            rollbacks=(*current.lineage.rollbacks, record),
            forked_from=current.lineage.forked_from,
        ),
        clock_offset=current.clock_offset,
    )


def apply_fork(base: ThreadState, event: RecordedEvent) -> ThreadState:
    """The first state of a fork: ``base`` (the source at ``source_seq``) under a new name."""
    payload = event.payload
    assert isinstance(payload, ThreadForked)
    if event.seq != 1:
        raise GapInThread(event.thread_id, 1, event.seq)
    record = ForkRecord(
        event_id=event.event_id,
        actor=event.actor,
        occurred_at=event.occurred_at,
        source_thread_id=payload.source_thread_id,
        source_seq=payload.source_seq,
        reason=payload.reason,
    )
    return dataclasses.replace(
        base,
        thread_id=event.thread_id,
        tenant=event.tenant,
        version=1,
        updated_at=event.occurred_at,
        high_time=event.occurred_at,
        lineage=Lineage(forked_from=record),
        clock_offset=base.clock_offset + base.version,
    )


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _check_next(state: ThreadState, event: RecordedEvent) -> None:
    if event.thread_id != state.thread_id:
        raise ValueError(
            f"event {event.event_id} of thread {event.thread_id!r} "
            f"folded into thread {state.thread_id!r}"
        )
    if event.seq != state.version + 1:
        raise GapInThread(state.thread_id, state.version + 1, event.seq)


_MEMORY = (MemorySet, MemoryDelete, MemoryMerged, MemoryResolved)
_SOURCES: dict[type, WriteSource] = {
    MemorySet: "set",
    MemoryDelete: "delete",
    MemoryMerged: "merged",
    MemoryResolved: "resolved",
}


class _Builder:
    """Applies events to a copy of a state; each part is copied on its first change."""

    __slots__ = (
        "base",
        "conversation",
        "high_time",
        "memory",
        "routing",
        "rules",
        "tasks",
        "updated_at",
        "version",
    )

    def __init__(self, state: ThreadState, rules: MergeRules) -> None:
        self.base = state
        self.rules = rules
        self.version = state.version
        self.updated_at = state.updated_at
        self.high_time = state.high_time
        self.conversation: list[ConversationEntry] | None = None
        self.memory: dict[str, KeyState] | None = None
        self.tasks: dict[str, TaskView] | None = None
        self.routing: list[RoutingRecord] | None = None

    def build(self) -> ThreadState:
        base = self.base
        if self.version == base.version:
            return base
        changes: dict[str, Any] = {
            "version": self.version,
            "updated_at": self.updated_at,
            "high_time": self.high_time,
        }
        if self.conversation is not None:
            changes["conversation"] = tuple(self.conversation)
        if self.memory is not None:
            changes["memory"] = self.memory
        if self.tasks is not None:
            changes["tasks"] = self.tasks
        if self.routing is not None:
            changes["routing"] = tuple(self.routing)
        return dataclasses.replace(base, **changes)

    def apply(self, event: RecordedEvent) -> None:
        # fold checked the thread and the seq
        self.version = event.seq
        self.updated_at = event.occurred_at
        self.high_time = _later(self.high_time, event.occurred_at)
        payload = event.payload
        if isinstance(payload, Message):
            self._message(event, payload)
        elif isinstance(payload, _MEMORY):
            self._memory(event, payload)
        elif isinstance(payload, TaskStatusUpdate):
            self._status(event, payload)
        elif isinstance(payload, Artifact):
            self._artifact(event, payload)
        elif isinstance(payload, RoutingDecided | RoutingEscalated | RoutingFeedback):
            if self.routing is None:
                self.routing = list(self.base.routing)
            self.routing.append(
                RoutingRecord(
                    seq=event.seq,
                    event_id=event.event_id,
                    actor=event.actor,
                    occurred_at=event.occurred_at,
                    decision=payload,
                )
            )
        # Commands, LLM completions, conflict reports, and rollbacks or forks that make no
        # sense are history only: they do not change the state.

    # --- parts -----------------------------------------------------------------------

    def _tasks(self) -> dict[str, TaskView]:
        if self.tasks is None:
            self.tasks = dict(self.base.tasks)
        return self.tasks

    def _task(self, task_id: str, context_id: str | None, seq: int) -> TaskView:
        task = self._tasks().get(task_id)
        if task is None:
            return TaskView(
                task_id=task_id,
                context_id=context_id,
                state="submitted",
                final=False,
                history=(),
                artifacts=(),
                message_ids=(),
                created_seq=seq,
                updated_seq=seq,
            )
        if task.context_id is None and context_id is not None:
            return dataclasses.replace(task, context_id=context_id)
        return task

    def _message(self, event: RecordedEvent, message: Message) -> None:
        if self.conversation is None:
            self.conversation = list(self.base.conversation)
        self.conversation.append(
            ConversationEntry(
                thread_id=event.thread_id,
                seq=event.seq,
                event_id=event.event_id,
                actor=event.actor,
                occurred_at=event.occurred_at,
                message=message,
            )
        )
        if message.task_id is not None:
            task = self._task(message.task_id, message.context_id, event.seq)
            self._tasks()[task.task_id] = dataclasses.replace(
                task, message_ids=(*task.message_ids, message.message_id), updated_seq=event.seq
            )

    def _status(self, event: RecordedEvent, update: TaskStatusUpdate) -> None:
        task = self._task(update.task_id, update.context_id, event.seq)
        entry = TaskStatusEntry(
            seq=event.seq,
            event_id=event.event_id,
            actor=event.actor,
            occurred_at=event.occurred_at,
            state=update.state,
            message=update.message,
        )
        self._tasks()[task.task_id] = dataclasses.replace(
            task,
            state=update.state,
            final=task.final or update.final,
            history=(*task.history, entry),
            updated_seq=event.seq,
        )

    def _artifact(self, event: RecordedEvent, chunk: Artifact) -> None:
        task = self._task(chunk.task_id, chunk.context_id, event.seq)
        artifacts = list(task.artifacts)
        index = next(
            (i for i, a in enumerate(artifacts) if a.artifact_id == chunk.artifact_id), None
        )
        old = artifacts[index] if index is not None else None
        parts = (*old.parts, *chunk.parts) if old is not None and chunk.append else chunk.parts
        view = ArtifactView(
            artifact_id=chunk.artifact_id,
            name=chunk.name if chunk.name is not None else (old.name if old else None),
            description=chunk.description
            if chunk.description is not None
            else (old.description if old else None),
            parts=parts,
            complete=chunk.last_chunk,
            updated_seq=event.seq,
        )
        if index is None:
            artifacts.append(view)
        else:
            artifacts[index] = view
        self._tasks()[task.task_id] = dataclasses.replace(
            task, artifacts=tuple(artifacts), updated_seq=event.seq
        )

    def _memory(
        self, event: RecordedEvent, op: MemorySet | MemoryDelete | MemoryMerged | MemoryResolved
    ) -> None:
        if self.memory is None:
            self.memory = dict(self.base.memory)
        vector = normalized(event.version_vector) or {LOG_CLOCK: self.base.clock_offset + event.seq}
        if isinstance(op, MemoryDelete):
            value, kind = None, "value"
        else:
            value, kind = op.value_json, op.kind
        write = Write(
            event_id=event.event_id,
            seq=event.seq,
            actor=event.actor,
            occurred_at=event.occurred_at,
            vector=vector,
            value_json=value,
            kind=kind,  # type: ignore[arg-type]  # ValueKind, or "value" for a delete
            source=_SOURCES[type(op)],
        )
        key = op.key
        self.memory[key] = apply_write(self.memory.get(key), write, key, self.rules.policy_for(key))
