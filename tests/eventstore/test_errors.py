"""The error hierarchy: one base, attributes carrying the values, ``retriable`` flags."""

from __future__ import annotations

import pytest

from eventstore import errors
from eventstore.errors import (
    BrokerUnavailable,
    CorruptEvent,
    CorruptLog,
    EventStoreError,
    EventTooLarge,
    IdempotencyConflict,
    InvalidEvent,
    LogClosed,
    StorageUnavailable,
    UnknownSchema,
    WrongExpectedVersion,
)
from eventstore.kafka import CatchUpStalled

EXAMPLES: list[tuple[EventStoreError, dict[str, object], str]] = [
    (LogClosed("log", "closed"), {"state": "closed"}, "log is closed"),
    (
        WrongExpectedVersion("t-42", 7, 9),
        {"expected": 7, "current": 9},
        "expected version 7 of thread 't-42', current version is 9",
    ),
    (
        IdempotencyConflict("e1", "elsewhere"),
        {"event_id": "e1"},
        "'e1' was already appended: elsewhere",
    ),
    (EventTooLarge("a2a.Message", "t", 2000, 1024), {"size": 2000, "limit": 1024}, "2000 bytes"),
    (
        InvalidEvent("memory.Set", "payload.key", "bad"),
        {"field": "payload.key"},
        "field 'payload.key'",
    ),
    (UnknownSchema(b"\x01" * 8, ["v1=00"]), {"known": ["v1=00"]}, "0101010101010101"),
    (CorruptEvent(None, "event_id", "short"), {"event_type": None}, "type not yet decoded"),
    (CorruptLog("/x.db", "not a database"), {"location": "/x.db"}, "/x.db: not a database"),
    (
        BrokerUnavailable("127.0.0.1:9092", "refused"),
        {"bootstrap": "127.0.0.1:9092"},
        "127.0.0.1:9092 is unreachable",
    ),
    (
        CatchUpStalled("agentlog.threads", 3, 7, 15, 60.0),
        {"partition": 3, "offset": 7, "target": 15},
        "'agentlog.threads' partition 3 stayed at offset 7 for 60 s while the broker reports 15",
    ),
]


@pytest.mark.parametrize(("error", "attributes", "text"), EXAMPLES, ids=lambda e: type(e).__name__)
def test_errors_carry_their_values(
    error: EventStoreError, attributes: dict[str, object], text: str
) -> None:
    assert isinstance(error, EventStoreError)
    for name, value in attributes.items():
        assert getattr(error, name) == value
    assert text in str(error)


def test_only_transient_situations_are_retriable() -> None:
    retriable = {
        name
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, EventStoreError) and cls.retriable
    }
    assert retriable == {"StorageUnavailable", "BrokerUnavailable"}
    assert StorageUnavailable("locked").retriable
