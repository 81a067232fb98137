"""agentlog's event store: the envelope, Avro schemas and codec, and the ``EventLog`` port.

Backends: :class:`EmbeddedEventLog` (SQLite, the default on one machine). Errors derive
from :class:`EventStoreError` (see :mod:`eventstore.errors` for the tree).
"""

from eventstore._sqlite_file import SNAPSHOT_APPLICATION_ID, sqlite_locked
from eventstore._sqlite_file import claim as claim_sqlite_file
from eventstore.codec import Codec, PreparedEvent
from eventstore.embedded import DEFAULT_MAX_EVENT_BYTES, EmbeddedEventLog
from eventstore.envelope import (
    ANY,
    NO_THREAD,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    ThreadInfo,
)
from eventstore.errors import (
    BrokerUnavailable,
    CodecError,
    CorruptEvent,
    CorruptLog,
    EventStoreError,
    EventTooLarge,
    IdempotencyConflict,
    InvalidEvent,
    LogClosed,
    SchemaError,
    StorageError,
    StorageUnavailable,
    UnknownSchema,
    WrongExpectedVersion,
)
from eventstore.factory import new_event, utc_now, uuid7
from eventstore.payloads import PAYLOAD_TYPES, Payload, payload_class
from eventstore.port import EventLog
from eventstore.schema import SchemaSet, shipped_schemas

__all__ = [
    "ANY",
    "DEFAULT_MAX_EVENT_BYTES",
    "NO_THREAD",
    "PAYLOAD_TYPES",
    "SNAPSHOT_APPLICATION_ID",
    "AppendResult",
    "BrokerUnavailable",
    "Codec",
    "CodecError",
    "CorruptEvent",
    "CorruptLog",
    "EmbeddedEventLog",
    "EventLog",
    "EventStoreError",
    "EventTooLarge",
    "ExpectedVersion",
    "IdempotencyConflict",
    "InvalidEvent",
    "LogClosed",
    "NewEvent",
    "Payload",
    "PreparedEvent",
    "RecordedEvent",
    "SchemaError",
    "SchemaSet",
    "StorageError",
    "StorageUnavailable",
    "ThreadInfo",
    "UnknownSchema",
    "WrongExpectedVersion",
    "claim_sqlite_file",
    "new_event",
    "payload_class",
    "shipped_schemas",
    "sqlite_locked",
    "utc_now",
    "uuid7",
]
