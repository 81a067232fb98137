"""Convenience constructors that read the clock and draw random ids.

Kept apart from :mod:`eventstore.envelope` so the envelope stays free of I/O and clocks:
code that needs determinism (replays, tests) builds :class:`NewEvent` directly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from eventstore.envelope import NewEvent
from eventstore.payloads import Payload

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """Return a new time-ordered UUID (version 7, RFC 9562) as text.

    Ids made in the same process sort in creation order, which keeps the log's event-id
    index append-only (fast inserts) instead of scattering writes over the whole index.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> datetime:
    """Return the current time in UTC, truncated to the millisecond the log stores."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_event(
    payload: Payload,
    *,
    actor: str,
    tenant: str = "default",
    version_vector: Mapping[str, int] | None = None,
    causation_id: str | None = None,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> NewEvent:
    """Build a :class:`NewEvent`, drawing a UUIDv7 ``event_id`` and reading the clock.

    Args:
        payload: The typed payload.
        actor: Who produces the event.
        tenant: Tenant of the thread.
        version_vector: The writer's causal context.
        causation_id: The event that caused this one.
        correlation_id: Correlation id.
        idempotency_key: The client's request key.
        event_id: Use this id instead of a fresh UUIDv7.
        occurred_at: Use this time instead of now.

    Returns:
        The event, ready to append.
    """
    return NewEvent(
        payload=payload,
        event_id=event_id or uuid7(),
        occurred_at=occurred_at or utc_now(),
        actor=actor,
        tenant=tenant,
        version_vector=dict(version_vector or {}),
        causation_id=causation_id,
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
    )
