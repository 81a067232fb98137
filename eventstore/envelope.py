"""The event envelope: what a producer hands to the log, and what the log hands back.

:class:`NewEvent` is an event not yet in a log: its thread and ``seq`` are decided by the
append. :class:`RecordedEvent` is an event as stored: the full ``agentlog.Envelope`` plus
its ``position`` in the log. Both are immutable. This module does no I/O and reads no clock;
:func:`eventstore.factory.new_event` fills ids and timestamps for you.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from eventstore.payloads import Payload

ExpectedVersion = int | None
"""What an append expects the thread's version to be; ``None`` (:data:`ANY`) checks nothing."""
ANY: ExpectedVersion = None
"""Append whatever the thread's version."""
NO_THREAD: int = 0
"""Append only if the thread has no events yet (its version is 0)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event to append.

    Attributes:
        payload: The typed payload; its class decides the event ``type``.
        event_id: Unique id; appending the same id again returns the original position.
        occurred_at: When it happened (timezone-aware; stored with millisecond precision).
        actor: The agent or replica that produced it.
        tenant: Tenant the thread belongs to.
        version_vector: The writer's causal context (actor -> counter).
        causation_id: The event that caused this one, if any.
        correlation_id: Groups events of one conversation turn or request.
        idempotency_key: The client's own key for the request that produced it.
    """

    payload: Payload
    event_id: str
    occurred_at: datetime
    actor: str
    tenant: str = "default"
    version_vector: Mapping[str, int] = dataclasses.field(default_factory=dict)
    causation_id: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None

    @property
    def type(self) -> str:
        """The event type, e.g. ``"memory.Set"``."""
        return self.payload.TYPE


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RecordedEvent:
    """An event as stored in a log: the envelope plus where it sits.

    Attributes:
        event_id: Unique id of the event.
        thread_id: The thread it belongs to.
        tenant: Tenant of the thread.
        seq: Position in the thread: 1, 2, 3... with no gaps.
        type: Event type; equals ``payload.TYPE``.
        occurred_at: When it happened (UTC, millisecond precision).
        actor: Who produced it.
        version_vector: The writer's causal context.
        causation_id: The event that caused it, if any.
        correlation_id: Correlation id, if any.
        idempotency_key: Client idempotency key, if any.
        payload: The typed payload.
        position: Position in the whole log (backend-defined, increasing in append order
            within a partition; the embedded log has one partition and counts from 1).
            ``0`` when the event did not come from a log.
    """

    event_id: str
    thread_id: str
    tenant: str
    seq: int
    type: str
    occurred_at: datetime
    actor: str
    version_vector: Mapping[str, int]
    causation_id: str | None
    correlation_id: str | None
    idempotency_key: str | None
    payload: Payload
    position: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did.

    Attributes:
        thread_id: The thread appended to.
        positions: Log position of each event, in the order given.
        first_seq: ``seq`` of the first event appended.
        version: The thread's version after the append (``seq`` of its last event).
        deduplicated: True when every event was already stored (a retried append); the
            positions are the original ones and nothing was written.
    """

    thread_id: str
    positions: tuple[int, ...]
    first_seq: int
    version: int
    deduplicated: bool = False

    @property
    def seqs(self) -> range:
        """The ``seq`` of each event, in the order given."""
        return range(self.first_seq, self.first_seq + len(self.positions))


@dataclasses.dataclass(frozen=True, slots=True)
class ThreadInfo:
    """A thread in the log: id, tenant, version and the position of its first event."""

    thread_id: str
    tenant: str
    version: int
    first_position: int
