"""The checks every backend runs on an append before it leaves the caller."""

from __future__ import annotations

from collections.abc import Sequence

from eventstore.codec import Codec, PreparedEvent
from eventstore.envelope import ExpectedVersion, NewEvent
from eventstore.errors import EventTooLarge, InvalidEvent


def prepare_append(
    codec: Codec,
    thread_id: str,
    events: Sequence[NewEvent],
    expected_version: ExpectedVersion,
    max_event_bytes: int,
) -> list[PreparedEvent]:
    """Validate an append and encode its events (all but their ``seq``).

    Raises:
        InvalidEvent: no events, a negative expected version, an event id twice, or an
            event that does not fit the schema (names the field).
        EventTooLarge: an encoded event exceeds ``max_event_bytes``.
    """
    if not events:
        raise InvalidEvent("(none)", "events", "an append needs at least one event")
    if expected_version is not None and expected_version < 0:
        raise InvalidEvent(
            events[0].type, "expected_version", f"must be >= 0 or None, got {expected_version}"
        )
    if len(events) > 1 and len({e.event_id for e in events}) != len(events):
        raise InvalidEvent(events[0].type, "event_id", "the same event_id twice in one append")
    prepare = codec.prepare
    prepared = [prepare(thread_id, e) for e in events]
    for p in prepared:
        size = len(p.head) + 1 + len(p.tail)  # a seq takes at least one byte
        if size > max_event_bytes:
            raise EventTooLarge(p.type, thread_id, size, max_event_bytes)
    return prepared
