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

import io
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import fastavro

from eventstore._avro_read import read_block_count, read_bytes, read_long, read_string
from eventstore._avro_write import long_bytes, string_bytes
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
BATCH = "batch"
"""Header numbering a client's command records (a sequencer in the same process takes the
commands it holds by this number instead of decoding the record)."""
CONTENT_TYPE = ("content-type", b"avro/binary")

WRONG_EXPECTED_VERSION = "wrong_expected_version"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
UNKNOWN_SCHEMA = "unknown_schema"
WRONG_PARTITION = "wrong_partition"

Status = Literal["accepted", "duplicate", "rejected"]

_REJECTED_NAME = "agentlog.command.Rejected"

_PREPARED_EVENT: dict[str, Any] = {
    "type": "record",
    "name": "PreparedEvent",
    "doc": "An event single-object encoded up to its seq (head), and after it.",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "type", "type": "string"},
        {"name": "head", "type": "bytes"},
        {"name": "tail", "type": "bytes"},
    ],
}

APPEND_BATCH_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AppendBatch",
    "namespace": "agentlog.kafka",
    "doc": "The append commands one client sent to one partition at once, in order.",
    "fields": [
        {"name": "reply_to", "type": "string"},
        {
            "name": "commands",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "AppendCommand",
                    "doc": "One append() as the client made it.",
                    "fields": [
                        {"name": "command_id", "type": "string"},
                        {"name": "thread_id", "type": "string"},
                        {"name": "expected_version", "type": ["null", "long"], "default": None},
                        {"name": "events", "type": {"type": "array", "items": _PREPARED_EVENT}},
                    ],
                },
            },
        },
    ],
}


def _outcome_schema() -> dict[str, Any]:
    rejected = expand(_REJECTED_NAME, load_named())
    outcome = {
        "type": "record",
        "name": "AppendOutcome",
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
    return {
        "type": "record",
        "name": "OutcomeBatch",
        "namespace": "agentlog.kafka",
        "doc": "The outcomes of one sequencer round for one client, in command order.",
        "fields": [{"name": "outcomes", "type": {"type": "array", "items": outcome}}],
    }


OUTCOME_BATCH_SCHEMA: dict[str, Any] = _outcome_schema()


class AppendCommand(NamedTuple):
    """One ``append()`` on its way to the sequencer.

    This and :class:`AppendOutcome` are named tuples, immutable like the frozen
    dataclasses elsewhere but built three times faster (one of each per append; see
    :class:`~eventstore.codec.PreparedEvent`).
    """

    command_id: str
    thread_id: str
    expected_version: int | None
    reply_to: str
    events: tuple[PreparedEvent, ...]


class AppendOutcome(NamedTuple):
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

    def check_prefix(self, data: bytes) -> None:
        """Raise :class:`CorruptEvent` unless ``data`` starts with this schema's header."""
        if data[: len(self.prefix)] != self.prefix:
            raise CorruptEvent(
                self.name,
                "(header)",
                "not a single-object encoded record of this schema "
                f"(starts with {data[:10].hex()}, expected {self.prefix.hex()})",
            )

    def decode(self, data: bytes) -> dict[str, Any]:
        self.check_prefix(data)
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


_COMMANDS = _Format(APPEND_BATCH_SCHEMA)
_OUTCOMES = _Format(OUTCOME_BATCH_SCHEMA)


def encode_command(command: AppendCommand) -> bytes:
    """One command as an item of an append batch (see :func:`command_batch`).

    Written by hand (fastavro's set-up per call costs more than the encoding): strings and
    bytes are a length and the bytes, the optional version is a union branch, the events
    an array of one block.
    """
    version = command.expected_version
    parts = [
        string_bytes(command.command_id),
        string_bytes(command.thread_id),
        b"\x00" if version is None else b"\x02" + long_bytes(version),
        long_bytes(len(command.events)),
    ]
    for e in command.events:
        parts += (
            string_bytes(e.event_id),
            string_bytes(e.type),
            long_bytes(len(e.head)),
            e.head,
            long_bytes(len(e.tail)),
            e.tail,
        )
    if command.events:
        parts.append(b"\x00")
    return b"".join(parts)


def batch_overhead(reply_to: str, commands: int) -> int:
    """Bytes an append batch of ``commands`` items adds to the items themselves (at most)."""
    return len(_COMMANDS.prefix) + len(string_bytes(reply_to)) + len(long_bytes(commands)) + 1


def command_batch(reply_to: str, items: Sequence[bytes]) -> bytes:
    """Single-object encoding of an ``AppendBatch`` from :func:`encode_command` items."""
    if not items:
        raise ValueError("an append batch holds at least one command")
    return b"".join(
        (_COMMANDS.prefix, string_bytes(reply_to), long_bytes(len(items)), *items, b"\x00")
    )


def decode_commands(data: bytes) -> list[AppendCommand]:
    """Decode an append batch into its commands, in order.

    Read by hand like :func:`encode_command` writes (the batch is read once per command by
    the sequencer: a generic decoder building dicts costs several times more).

    Raises:
        CorruptEvent: the bytes are not an append batch (names the part that failed).
    """
    _COMMANDS.check_prefix(data)
    field = "reply_to"
    try:
        reply_to, pos = read_string(data, len(_COMMANDS.prefix))
        field = "commands"
        commands: list[AppendCommand] = []
        count, pos = read_block_count(data, pos)
        while count:
            for _ in range(count):
                command, pos = _read_command(data, pos, reply_to)
                commands.append(command)
            count, pos = read_block_count(data, pos)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptEvent(_COMMANDS.name, field, f"{type(exc).__name__}: {exc}") from exc
    if pos != len(data):
        raise CorruptEvent(_COMMANDS.name, "(body)", f"{len(data) - pos} trailing bytes")
    return commands


def _read_command(data: bytes, pos: int, reply_to: str) -> tuple[AppendCommand, int]:
    command_id, pos = read_string(data, pos)
    thread_id, pos = read_string(data, pos)
    branch, pos = read_long(data, pos)
    version: int | None = None
    if branch == 1:
        version, pos = read_long(data, pos)
    elif branch != 0:
        raise ValueError(f"union branch {branch} of expected_version does not exist")
    events: list[PreparedEvent] = []
    count, pos = read_block_count(data, pos)
    while count:
        for _ in range(count):
            event_id, pos = read_string(data, pos)
            type_, pos = read_string(data, pos)
            head, pos = read_bytes(data, pos)
            tail, pos = read_bytes(data, pos)
            events.append(PreparedEvent(event_id, type_, head, tail))
        count, pos = read_block_count(data, pos)
    return AppendCommand(command_id, thread_id, version, reply_to, tuple(events)), pos


def _outcome_datum(outcome: AppendOutcome) -> dict[str, Any]:
    rejected = outcome.rejected
    return {
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


def encode_outcomes(outcomes: Sequence[AppendOutcome]) -> bytes:
    """Single-object encoding of an ``OutcomeBatch``."""
    return _OUTCOMES.encode({"outcomes": [_outcome_datum(o) for o in outcomes]})


def decode_outcomes(data: bytes) -> list[AppendOutcome]:
    """Decode an outcome batch.

    Raises:
        CorruptEvent: the bytes are not an outcome batch (names the part that failed).
    """
    return [
        AppendOutcome(
            d["command_id"],
            d["thread_id"],
            d["status"],
            d["partition"],
            tuple(d["offsets"]),
            d["first_seq"],
            d["version"],
            d["conflict_event_id"],
            None if (r := d["rejected"]) is None else CommandRejected(**r),
        )
        for d in _OUTCOMES.decode(data)["outcomes"]
    ]


def header(headers: Any, name: str) -> bytes | None:
    """The value of header ``name`` in a consumed record's headers, or ``None``."""
    for key, value in headers or ():
        if key == name:
            return bytes(value)
    return None
