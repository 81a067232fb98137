"""Errors raised by the event store.

Catch :class:`EventStoreError` for anything this package raises. Each subclass names one
situation a caller can act on, carries the values in its message as attributes, and says
with ``retriable`` whether trying the same call again can succeed::

    EventStoreError
    ├── LogClosed                   the log is not open (never opened, or closed)
    ├── WrongExpectedVersion        optimistic concurrency check failed (carries current version)
    ├── IdempotencyConflict         an event_id was reused for a different event
    ├── EventTooLarge               an encoded event exceeds the configured limit
    ├── InvalidEvent                an event or payload is malformed (names the field)
    ├── CodecError                  bytes could not be turned back into an event
    │   ├── UnknownSchema           the fingerprint names no known writer schema
    │   └── CorruptEvent            truncated or ill-formed bytes (names type and field)
    ├── SchemaError                 the .avsc files are unreadable or incompatible
    ├── StorageError                the storage under the log failed
    │   ├── StorageUnavailable      could not reach or lock the storage (retriable)
    │   ├── CorruptLog              the file is not an agentlog log, or is damaged
    │   ├── IndexWriterFailed       the Kafka index's writer process failed (eventstore.kafka)
    │   └── CatchUpStalled          the Kafka index got no further for too long (eventstore.kafka)
    ├── BrokerUnavailable           the Kafka broker cannot be reached (retriable)
    ├── TopicMismatch               a Kafka topic has another partition count (eventstore.kafka)
    ├── TopicSetupFailed            the broker refused to create a topic (eventstore.kafka)
    └── IndexConflict               two events claim one (thread, seq) in the Kafka thread index
"""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class of every error raised by :mod:`eventstore`."""

    retriable: bool = False


class LogClosed(EventStoreError):
    """The event log is not open: it was never opened, or it was closed."""

    def __init__(self, what: str, state: str) -> None:
        self.what = what
        self.state = state
        super().__init__(f"{what} is {state}; use it inside 'async with' while it is open")


class WrongExpectedVersion(EventStoreError):
    """An append's ``expected_version`` does not match the thread's current version."""

    def __init__(self, thread_id: str, expected: int, current: int) -> None:
        self.thread_id = thread_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"expected version {expected} of thread {thread_id!r}, current version is {current}"
        )


class IdempotencyConflict(EventStoreError):
    """An ``event_id`` already stored is being appended with different content or place."""

    def __init__(self, event_id: str, detail: str) -> None:
        self.event_id = event_id
        self.detail = detail
        super().__init__(f"event_id {event_id!r} was already appended: {detail}")


class EventTooLarge(EventStoreError):
    """An encoded event is larger than the log accepts."""

    def __init__(self, event_type: str, thread_id: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.thread_id = thread_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"{event_type} event for thread {thread_id!r} is {size} bytes encoded, "
            f"over the limit of {limit} bytes (setting max_event_bytes)"
        )


class InvalidEvent(EventStoreError):
    """An event or its payload does not fit the schema; ``field`` names where."""

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        self.event_type = event_type
        self.field = field
        self.problem = problem
        super().__init__(f"invalid {event_type} event: field {field!r}: {problem}")


class CodecError(EventStoreError):
    """Bytes could not be decoded into an event."""


class UnknownSchema(CodecError):
    """The single-object header names a writer schema this reader does not know."""

    def __init__(self, fingerprint: bytes, known: list[str]) -> None:
        self.fingerprint = fingerprint
        self.known = known
        super().__init__(
            f"unknown writer schema fingerprint {fingerprint.hex()} "
            f"(known: {', '.join(known) or 'none'}); is this event newer than this agentlog?"
        )


class CorruptEvent(CodecError):
    """The bytes are truncated or do not follow the writer schema."""

    def __init__(self, event_type: str | None, field: str, problem: str) -> None:
        self.event_type = event_type
        self.field = field
        self.problem = problem
        what = f"{event_type} event" if event_type else "event (type not yet decoded)"
        super().__init__(f"cannot decode {what}: field {field!r}: {problem}")


class SchemaError(EventStoreError):
    """The Avro schema files are unreadable, or a schema change is not compatible."""


class StorageError(EventStoreError):
    """The storage under the event log failed."""


class StorageUnavailable(StorageError):
    """The storage could not be reached or locked in time; trying again may work."""

    retriable = True


class CorruptLog(StorageError):
    """The log's file is not an agentlog log, or it is damaged."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")


class BrokerUnavailable(EventStoreError):
    """The Kafka broker could not be reached after the configured retries."""

    retriable = True

    def __init__(self, bootstrap: str, problem: str) -> None:
        self.bootstrap = bootstrap
        self.problem = problem
        super().__init__(f"Kafka broker at {bootstrap} is unreachable: {problem}")
