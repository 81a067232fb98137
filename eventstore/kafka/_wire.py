"""Records of the ``agentlog.commands`` topic: append commands and their outcomes.

Both are Avro records, single-object encoded like events (``C3 01``, the 8-byte
CRC-64-AVRO fingerprint of the record's schema, the body), so the command protocol can
evolve the way the event schemas do. A header ``kind`` (``append`` or ``outcome``) lets a
reader skip the other kind without decoding it, and ``reply-to`` names the client that
waits for an outcome.

- ``agentlog.kafka.AppendCommand``: an ``append()`` as a client sends it: the thread, the
  expected version, and the events encoded but for their ``seq`` (the codec's
  :class:`~eventstore.codec.PreparedEvent`: ``head`` and ``tail``), which the sequencer
  completes with the seqs it assigns.
- ``agentlog.kafka.AppendOutcome``: what the sequencer did with it: ``accepted`` or
  ``duplicate`` (with the partition and offsets of the events in the threads topic) or
  ``rejected``, which carries the ``agentlog.command.Rejected`` record of the published
  schemas (code ``wrong_expected_version`` with the current version, or
  ``idempotency_conflict``).

This module is pure: encoding and decoding only.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Literal

import fastavro

from eventstore.codec import MAGIC, PreparedEvent
from eventstore.errors import (
    CorruptEvent,
    EventStoreError,
    IdempotencyConflict,
    WrongExpectedVersion,
)
from eventstore.payloads import CommandRejected
from eventstore.schema import expand, fingerprint, load_named

KIND = "kind"
"""Header naming the record kind: :data:`KIND_APPEND` or :data:`KIND_OUTCOME`."""
KIND_APPEND = b"append"
KIND_OUTCOME = b"outcome"
REPLY_TO = "reply-to"
"""Header naming the client (``KafkaEventLog.client_id``) that awaits the outcome."""
CONTENT_TYPE = ("content-type", b"avro/binary")

WRONG_EXPECTED_VERSION = "wrong_expected_version"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
UNKNOWN_SCHEMA = "unknown_schema"

Status = Literal["accepted", "duplicate", "rejected"]

_REJECTED_NAME = "agentlog.command.Rejected"

APPEND_COMMAND_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AppendCommand",
    "namespace": "agentlog.kafka",
    "doc": "An append as a client sent it to the commands topic.",
    "fields": [
        {"name": "command_id", "type": "string"},
        {"name": "thread_id", "type": "string"},
        {"name": "expected_version", "type": ["null", "long"], "default": None},
        {"name": "reply_to", "type": "string"},
        {
            "name": "events",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "PreparedEvent",
                    "doc": "An event single-object encoded up to its seq (head), and after it.",
                    "fields": [
                        {"name": "event_id", "type": "string"},
                        {"name": "type", "type": "string"},
                        {"name": "head", "type": "bytes"},
                        {"name": "tail", "type": "bytes"},
                    ],
                },
            },
        },
    ],
}


def _outcome_schema() -> dict[str, Any]:
    rejected = expand(_REJECTED_NAME, load_named())
    return {
        "type": "record",
        "name": "AppendOutcome",
        "namespace": "agentlog.kafka",
        "doc": "What the sequencer did with one append command.",
        "fields": [
            {"name": "command_id", "type": "string"},
            {"name": "thread_id", "type": "string"},
            {
                "name": "status",
                "type": {
                    "type": "enum",
                    "name": "AppendStatus",
                    "symbols": ["accepted", "duplicate", "rejected"],
                },
            },
            {"name": "partition", "type": "int"},
            {"name": "offsets", "type": {"type": "array", "items": "long"}},
            {"name": "first_seq", "type": "long"},
            {"name": "version", "type": "long"},
            {"name": "conflict_event_id", "type": ["null", "string"], "default": None},
            {"name": "rejected", "type": ["null", rejected], "default": None},
        ],
    }


APPEND_OUTCOME_SCHEMA: dict[str, Any] = _outcome_schema()


@dataclasses.dataclass(frozen=True, slots=True)
class AppendCommand:
    """One ``append()`` on its way to the sequencer."""

    command_id: str
    thread_id: str
    expected_version: int | None
    reply_to: str
    events: tuple[PreparedEvent, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class AppendOutcome:
    """The sequencer's answer to one command.

    Attributes:
        command_id: The command answered.
        thread_id: Its thread.
        status: ``accepted``, ``duplicate`` (a retry: nothing written) or ``rejected``.
        partition: Partition of the thread (in both topics).
        offsets: Offsets of the command's events in the threads topic, in command order
            (empty when rejected).
        first_seq: Seq of the command's first event (0 when rejected).
        version: The thread's version after the command.
        conflict_event_id: For an ``idempotency_conflict``, the event id reused.
        rejected: Why the command was refused, as the published ``command.Rejected``.
    """

    command_id: str
    thread_id: str
    status: Status
    partition: int
    offsets: tuple[int, ...] = ()
    first_seq: int = 0
    version: int = 0
    conflict_event_id: str | None = None
    rejected: CommandRejected | None = None

    def error(self) -> EventStoreError:
        """The error ``append()`` raises for a rejected outcome.

        Raises:
            ValueError: the outcome is not a rejection.
        """
        rejected = self.rejected
        if self.status != "rejected" or rejected is None:
            raise ValueError(f"outcome of command {self.command_id} is {self.status}")
        if rejected.code == WRONG_EXPECTED_VERSION:
            return WrongExpectedVersion(
                self.thread_id, rejected.expected_version or 0, rejected.current_version or 0
            )
        if rejected.code == IDEMPOTENCY_CONFLICT:
            return IdempotencyConflict(self.conflict_event_id or "?", rejected.reason)
        return EventStoreError(f"command {self.command_id} was rejected: {rejected.reason}")


class _Format:
    """One record schema: parsed, its single-object prefix, and its full name."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.name = f"{schema['namespace']}.{schema['name']}"
        self.parsed = fastavro.parse_schema(schema, named_schemas={})
        self.prefix = MAGIC + fingerprint(schema)

    def encode(self, datum: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.prefix)
        fastavro.schemaless_writer(out, self.parsed, datum)
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[: len(self.prefix)] != self.prefix:
            raise CorruptEvent(
                self.name,
                "(header)",
                "not a single-object encoded record of this schema "
                f"(starts with {data[:10].hex()}, expected {self.prefix.hex()})",
            )
        buf = io.BytesIO(data)
        buf.seek(len(self.prefix))
        try:
            datum = fastavro.schemaless_reader(buf, self.parsed, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, ... on bad bytes
            raise CorruptEvent(self.name, "(body)", f"{type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise CorruptEvent(self.name, "(body)", f"{len(data) - buf.tell()} trailing bytes")
        assert isinstance(datum, dict)  # the schema is a record
        return datum


_COMMAND = _Format(APPEND_COMMAND_SCHEMA)
_OUTCOME = _Format(APPEND_OUTCOME_SCHEMA)


def encode_command(command: AppendCommand) -> bytes:
    """Single-object encoding of ``command``."""
    return _COMMAND.encode(
        {
            "command_id": command.command_id,
            "thread_id": command.thread_id,
            "expected_version": command.expected_version,
            "reply_to": command.reply_to,
            "events": [
                {"event_id": e.event_id, "type": e.type, "head": e.head, "tail": e.tail}
                for e in command.events
            ],
        }
    )


def decode_command(data: bytes) -> AppendCommand:
    """Decode an append command.

    Raises:
        CorruptEvent: the bytes are not an append command (names the part that failed).
    """
    d = _COMMAND.decode(data)
    return AppendCommand(
        d["command_id"],
        d["thread_id"],
        d["expected_version"],
        d["reply_to"],
        tuple(PreparedEvent(e["event_id"], e["type"], e["head"], e["tail"]) for e in d["events"]),
    )


def encode_outcome(outcome: AppendOutcome) -> bytes:
    """Single-object encoding of ``outcome``."""
    rejected = outcome.rejected
    return _OUTCOME.encode(
        {
            "command_id": outcome.command_id,
            "thread_id": outcome.thread_id,
            "status": outcome.status,
            "partition": outcome.partition,
            "offsets": list(outcome.offsets),
            "first_seq": outcome.first_seq,
            "version": outcome.version,
            "conflict_event_id": outcome.conflict_event_id,
            "rejected": None
            if rejected is None
            else {
                "command_id": rejected.command_id,
                "code": rejected.code,
                "reason": rejected.reason,
                "expected_version": rejected.expected_version,
                "current_version": rejected.current_version,
            },
        }
    )


def decode_outcome(data: bytes) -> AppendOutcome:
    """Decode an append outcome.

    Raises:
        CorruptEvent: the bytes are not an outcome (names the part that failed).
    """
    d = _OUTCOME.decode(data)
    r = d["rejected"]
    return AppendOutcome(
        d["command_id"],
        d["thread_id"],
        d["status"],
        d["partition"],
        tuple(d["offsets"]),
        d["first_seq"],
        d["version"],
        d["conflict_event_id"],
        None if r is None else CommandRejected(**r),
    )


def header(headers: Any, name: str) -> bytes | None:
    """The value of header ``name`` in a consumed record's headers, or ``None``."""
    for key, value in headers or ():
        if key == name:
            return bytes(value)
    return None
