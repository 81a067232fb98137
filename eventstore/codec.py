"""Avro single-object encoding of events.

Layout of one encoded event (the Avro specification's single-object encoding)::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | Avro binary

The body is one ``agentlog.Envelope`` record. Because an Avro record is just its fields one
after another, the codec encodes everything but ``seq`` before the append (so bad events
fail early and the log's writer only splices in the ``seq`` it assigns): the result is
byte-for-byte what encoding the whole envelope at once gives; a property test checks it.

Decoding resolves events written by any released schema version (``schemas/history``) to
the current one. Errors name the event type and the field that failed.
"""

from __future__ import annotations

import dataclasses
import io
import math
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import fastavro
import fastavro.validation

from eventstore._avro_payload import PayloadReader, PayloadWriter, Unsupported, compile_record
from eventstore._avro_read import (
    Reader,
    field_reader,
    read_long,
    read_six_byte_long,
    read_string,
)
from eventstore._avro_write import Encoder, field_encoder, long_bytes
from eventstore.compat import check_backward_transitive
from eventstore.envelope import NewEvent, RecordedEvent
from eventstore.errors import CorruptEvent, InvalidEvent, SchemaError, UnknownSchema
from eventstore.payloads import RECORD_TYPES, Payload, from_avro, to_avro
from eventstore.schema import SchemaSet, expand, shipped_schemas

MAGIC = b"\xc3\x01"
"""The two marker bytes that start every single-object encoded datum."""
HEADER_SIZE = 10
"""Marker plus fingerprint."""
_NS_PREFIX = "agentlog."


encode_long = long_bytes
"""Encode ``n`` as an Avro ``long`` (zig-zag varint)."""


def _read_long(buf: io.BytesIO) -> int:
    shift = 0
    acc = 0
    while True:
        b = buf.read(1)
        if not b:
            raise EOFError("bytes end inside a long")
        acc |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return (acc >> 1) ^ -(acc & 1)
        shift += 7


@dataclasses.dataclass(frozen=True, slots=True)
class _FastPath:
    """Direct encoders of the envelope fields before and after ``seq``; per payload
    record its union branch index (encoded) and parsed schema (fastavro's route); and per
    payload class and record its direct writer and reader (:mod:`eventstore._avro_payload`)."""

    head: list[tuple[str, Encoder]]
    tail: list[tuple[str, Encoder]]
    branches: dict[str, tuple[bytes, Any]]
    writers: dict[type[Payload], tuple[bytes, PayloadWriter]]
    readers: dict[str, PayloadReader]


class PreparedEvent(NamedTuple):
    """An event encoded but for its ``seq``; :meth:`Codec.finish` completes it.

    A named tuple rather than a frozen dataclass: one is built per event appended, and a
    frozen dataclass's ``__init__`` (a call of ``object.__setattr__`` per field) costs
    about three times as much (measured: 2.9 against 0.85 us for nine fields).

    Attributes:
        event_id: The event's id.
        type: Its event type.
        head: Header plus the fields before ``seq``.
        tail: The fields after ``seq``.
    """

    event_id: str
    type: str
    head: bytes
    tail: bytes

    def size_with(self, seq: int) -> int:
        """Length of the finished encoding for ``seq``."""
        return len(self.head) + len(encode_long(seq)) + len(self.tail)


class EventKey(NamedTuple):
    """What identifies an encoded event, read without decoding it in full (:meth:`Codec.peek`).

    Attributes:
        event_id: The event's id.
        thread_id: Its thread.
        tenant: Its tenant.
        seq: Its seq in the thread.
        occurred_ms: Its ``occurred_at`` in milliseconds since the epoch.
    """

    event_id: str
    thread_id: str
    tenant: str
    seq: int
    occurred_ms: int


#: The envelope's leading fields, in order, that :meth:`Codec.peek` reads directly.
_PEEK_FIELDS = ("event_id", "thread_id", "tenant", "seq", "type", "occurred_at")


def _short_head(data: bytes) -> tuple[str, str, str, int, str, int, int] | None:
    """The envelope's leading fields of the usual event, read in one function with no call
    per field: id, thread, tenant and type shorter than 64 bytes, a seq from -2**20 to
    2**20 - 1 (a varint of up to three bytes: a thread's seqs pass 63 early), the time a
    six-byte varint (1900 to 2039). Returns (event_id, thread_id, tenant, seq, type,
    occurred_at in ms, offset after them), or None for any other shape (the general readers
    take those).

    Raises:
        IndexError: the bytes end inside the strings.
        UnicodeDecodeError: a string is not UTF-8.
    """
    b = data[HEADER_SIZE]  # unrolled, and no list: this runs for every record indexed
    if b & 0x81:
        return None
    i = HEADER_SIZE + 1 + (b >> 1)
    event_id = data[HEADER_SIZE + 1 : i].decode()
    b = data[i]
    if b & 0x81:
        return None
    end = i + 1 + (b >> 1)
    thread_id = data[i + 1 : end].decode()
    b = data[end]
    if b & 0x81:
        return None
    i = end + 1 + (b >> 1)
    tenant = data[end + 1 : i].decode()
    b = data[i]  # seq: a varint of one to three bytes
    if b & 0x80:
        i += 1
        c = data[i]
        if c & 0x80:
            i += 1
            d = data[i]
            if d & 0x80:
                return None
            b = (b & 0x7F) | (c & 0x7F) << 7 | d << 14
        else:
            b = (b & 0x7F) | c << 7
    seq = (b >> 1) ^ -(b & 1)
    b = data[i + 1]  # type
    if b & 0x81:
        return None
    i, end = i + 2, i + 2 + (b >> 1)
    type_ = data[i:end].decode()
    millis = read_six_byte_long(data, end)
    if millis is None:
        return None
    return event_id, thread_id, tenant, seq, type_, millis, end + 6


def _envelope_values(thread_id: str, event: NewEvent) -> dict[str, Any]:
    """The envelope's fields of ``event`` in ``thread_id``, but ``seq`` and the payload."""
    return {
        "event_id": event.event_id,
        "thread_id": thread_id,
        "tenant": event.tenant,
        "type": event.payload.TYPE,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "version_vector": event.version_vector,
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "idempotency_key": event.idempotency_key,
    }


#: The envelope fields (but the payload) that :func:`_read_short_envelope` and the short
#: path of :meth:`Codec.prepare` are written for;
#: a codec whose envelope differs reads every event with the general readers.
_SHORT_ENVELOPE = [
    ("event_id", "string"),
    ("thread_id", "string"),
    ("tenant", "string"),
    ("seq", "long"),
    ("type", "string"),
    ("occurred_at", {"type": "long", "logicalType": "timestamp-millis"}),
    ("actor", "string"),
    ("version_vector", {"type": "map", "values": "long"}),
    ("causation_id", ["null", "string"]),
    ("correlation_id", ["null", "string"]),
    ("idempotency_key", ["null", "string"]),
]


def _read_short_envelope(data: bytes, event: RecordedEvent) -> int | None:
    """Read the usual event's envelope fields into ``event`` with a call or two, not one
    per field: those of :func:`_short_head`, then an actor and optional ids shorter than
    64 bytes and a version vector of one block of fewer than 64 entries. Returns the
    offset of the payload, or None having set nothing when a field is of another shape
    (the general readers then read it).

    Raises:
        IndexError: the bytes end inside these fields.
        UnicodeDecodeError: a string is not UTF-8.
    """
    head = _short_head(data)
    if head is None:
        return None
    event_id, thread_id, tenant, seq, type_, millis, i = head
    b = data[i]  # actor
    if b & 0x81:
        return None
    i, end = i + 1, i + 1 + (b >> 1)
    actor = data[i:end].decode()
    b = data[end]  # version vector: one block of fewer than 64 entries, then the end
    if b & 0x81:
        return None
    i = end + 1
    vector = {}
    count = b >> 1
    for _ in range(count):
        b = data[i]
        if b & 0x81:
            return None
        end = i + 1 + (b >> 1)
        key = data[i + 1 : end].decode()
        vector[key], i = read_long(data, end)
    if count:  # a block of entries, then the count of the next: 0 ends the map
        if data[i]:
            return None
        i += 1
    optional: list[str | None] = []
    for _ in range(3):  # causation_id, correlation_id, idempotency_key
        b = data[i]
        if b == 0:
            optional.append(None)
            i += 1
            continue
        if b != 2:
            return None
        b = data[i + 1]
        if b & 0x81:
            return None
        i, end = i + 2, i + 2 + (b >> 1)
        optional.append(data[i:end].decode())
        i = end
    _set_event_id(event, event_id)
    _set_thread_id(event, thread_id)
    _set_tenant(event, tenant)
    _set_seq(event, seq)
    _set_type(event, type_)
    _set_occurred_at(event, datetime.fromtimestamp(millis / 1000, UTC))
    _set_actor(event, actor)
    _set_version_vector(event, vector)
    _set_causation_id(event, optional[0])
    _set_correlation_id(event, optional[1])
    _set_idempotency_key(event, optional[2])
    return i


class Codec:
    """Encodes and decodes events with the shipped (or given) schemas.

    A codec is immutable after construction and safe to share between threads and tasks.

    Args:
        schemas: The schema set to write with; default the one shipped with agentlog.

    Raises:
        SchemaError: the schemas cannot read every released version (BACKWARD_TRANSITIVE).
    """

    def __init__(self, schemas: SchemaSet | None = None) -> None:
        self.schemas = schemas or shipped_schemas()
        self.fingerprint = self.schemas.fingerprint
        envelope = self.schemas.envelope
        self._named: dict[str, Any] = {}
        self._parsed = fastavro.parse_schema(envelope, named_schemas=self._named)
        self._prefix = MAGIC + self.fingerprint
        self._fast = self._compile_fast_path(envelope["fields"])
        self._readers, self._branches = self._compile_readers(envelope["fields"])
        self._writers: dict[bytes, tuple[Any, Any, dict[str, Any], dict[str, Any]]] = {
            self.fingerprint: (self._parsed, None, envelope, self._named)
        }
        for version in self.schemas.history:
            if version.fingerprint not in self._writers:
                named: dict[str, Any] = {}
                parsed = fastavro.parse_schema(version.schema, named_schemas=named)
                self._writers[version.fingerprint] = (parsed, self._parsed, version.schema, named)
        self._versions = {v.fingerprint: v.version for v in self.schemas.history}
        leading = tuple(f["name"] for f in envelope["fields"][: len(_PEEK_FIELDS)])
        self._peekable = leading == _PEEK_FIELDS
        self._short_envelope = [(f["name"], f["type"]) for f in envelope["fields"][:-1]] == (
            _SHORT_ENVELOPE
        )
        self._short_writers = (
            tuple(enc for _, enc in self._fast.head + self._fast.tail)
            if self._short_envelope
            else None
        )
        broken = {
            v: p for v, p in check_backward_transitive(envelope, self.schemas.history).items() if p
        }
        if broken:
            oldest, problems = min(broken.items())
            raise SchemaError(
                f"the current schema cannot read events of released version v{oldest}: "
                f"{problems[0]} (run 'agentlog schemas check' for all problems)"
            )

    def _compile_fast_path(self, fields: list[dict[str, Any]]) -> _FastPath:
        """Direct encoders for the envelope's own fields; fastavro for the payload.

        Raises:
            SchemaError: an envelope field has a type the direct encoder does not write
                (extend ``eventstore/_avro_write.py``), or ``payload`` is not the last field.
        """
        repeats = {"thread_id", "tenant", "type", "actor", "version_vector"}
        cut = next(i for i, f in enumerate(fields) if f["name"] == "seq")
        encoders = []
        for field in fields:
            if field["name"] in ("seq", "payload"):
                continue
            encoder = field_encoder(field["type"], cached=field["name"] in repeats)
            if encoder is None:
                raise SchemaError(
                    f"envelope field {field['name']!r} has type {field['type']!r}, which "
                    "the codec's direct encoder does not write (eventstore/_avro_write.py)"
                )
            encoders.append((field["name"], encoder))
        if fields[-1]["name"] != "payload":
            raise SchemaError("the envelope's last field must be 'payload'")
        names = self.schemas.payload_names()
        branches = {}
        writers: dict[type[Payload], tuple[bytes, PayloadWriter]] = {}
        readers: dict[str, PayloadReader] = {}
        for index, name in enumerate(names):
            expanded = expand(name, self.schemas.named)
            record = fastavro.parse_schema(expanded, named_schemas={})
            branches[name] = (long_bytes(index), record)
            try:
                write, read = compile_record(expanded, RECORD_TYPES)
            except Unsupported as exc:
                raise SchemaError(
                    f"payload record {name!r}: {exc}, which the codec's direct route does "
                    "not handle (eventstore/_avro_payload.py)"
                ) from exc
            writers[typing.cast(type[Payload], RECORD_TYPES[name])] = (long_bytes(index), write)
            readers[name] = read
        return _FastPath(encoders[:cut], encoders[cut:], branches, writers, readers)

    def _compile_readers(
        self, fields: list[dict[str, Any]]
    ) -> tuple[
        list[tuple[Reader, Callable[[RecordedEvent, Any], None]]],
        list[tuple[str, PayloadReader]],
    ]:
        """Direct readers for the envelope's own fields (in order) and, per union branch
        of the payload, its record name and direct reader.

        Raises:
            SchemaError: an envelope field has a type the direct reader does not read.
        """
        readers = []
        for field in fields[:-1]:
            reader = field_reader(field["type"])
            if reader is None:
                raise SchemaError(
                    f"envelope field {field['name']!r} has type {field['type']!r}, which "
                    "the codec's direct reader does not read (eventstore/_avro_read.py)"
                )
            readers.append((reader, getattr(RecordedEvent, field["name"]).__set__))
        fast = self._fast
        branches = [(name, fast.readers[name]) for name in self.schemas.payload_names()]
        return readers, branches

    # --- encoding ----------------------------------------------------------------------

    def prepare(self, thread_id: str, event: NewEvent) -> PreparedEvent:
        """Encode ``event`` for ``thread_id``, all but its ``seq``.

        Raises:
            InvalidEvent: a field is missing, of the wrong type or out of range; the error
                names the event type and the field.
        """
        payload = event.payload
        event_type = payload.TYPE
        _check_text(event_type, "thread_id", thread_id)
        _check_text(event_type, "event_id", event.event_id)
        _check_text(event_type, "actor", event.actor)
        occurred = event.occurred_at
        if not isinstance(occurred, datetime) or occurred.tzinfo is None:
            raise InvalidEvent(
                event_type, "occurred_at", f"must be a timezone-aware datetime, got {occurred!r}"
            )
        if self._short_writers is not None:
            # the usual envelope: its encoders called in field order, no dict of values
            ev_id, thread, tenant, kind, occurred_at, actor, vector, cause, corr, key = (
                self._short_writers
            )
            try:
                head = b"".join(
                    (self._prefix, ev_id(event.event_id), thread(thread_id), tenant(event.tenant))
                )
                tail = b"".join(
                    (
                        kind(event_type),
                        occurred_at(occurred),
                        actor(event.actor),
                        vector(event.version_vector),
                        cause(event.causation_id),
                        corr(event.correlation_id),
                        key(event.idempotency_key),
                        self._payload_bytes(payload),
                    )
                )
            except Exception as exc:  # as below
                raise self._invalid(thread_id, event, exc) from exc
            return PreparedEvent(event.event_id, event_type, head, tail)
        fast = self._fast
        values = _envelope_values(thread_id, event)
        try:
            head = self._prefix + b"".join([enc(values[n]) for n, enc in fast.head])
            tail = b"".join([enc(values[n]) for n, enc in fast.tail])
            body = self._payload_bytes(payload)
        except Exception as exc:  # fastavro raises many kinds; diagnose names the field
            raise self._invalid(thread_id, event, exc) from exc
        return PreparedEvent(event.event_id, event_type, head, tail + body)

    def _payload_bytes(self, payload: Payload) -> bytes:
        """The payload's union branch and record, by the direct writer when it takes the
        values (the bytes are the same), else by fastavro (which also takes, for instance,
        an ``int`` where a ``float`` is declared, or a subclass)."""
        direct = self._fast.writers.get(type(payload))
        if direct is not None:
            try:
                return direct[0] + direct[1](payload)
            except Exception:  # any misfit: fastavro decides below
                pass
        name, plain = to_avro(payload)
        index, record = self._fast.branches[name]
        body = io.BytesIO()
        fastavro.schemaless_writer(body, record, plain)
        return index + body.getvalue()

    def finish(self, prepared: PreparedEvent, seq: int) -> bytes:
        """Return the complete encoding of ``prepared`` at ``seq``."""
        return prepared.head + encode_long(seq) + prepared.tail

    def encode(self, thread_id: str, seq: int, event: NewEvent) -> bytes:
        """Encode ``event`` as the ``seq``-th event of ``thread_id``.

        Raises:
            InvalidEvent: the event does not fit the schema.
        """
        return self.finish(self.prepare(thread_id, event), seq)

    def encode_record(self, record: RecordedEvent) -> bytes:
        """Encode a recorded event again (for copying it to another log or topic).

        Raises:
            InvalidEvent: the event does not fit the schema.
        """
        new = NewEvent(
            payload=record.payload,
            event_id=record.event_id,
            occurred_at=record.occurred_at,
            actor=record.actor,
            tenant=record.tenant,
            version_vector=record.version_vector,
            causation_id=record.causation_id,
            correlation_id=record.correlation_id,
            idempotency_key=record.idempotency_key,
        )
        return self.encode(record.thread_id, record.seq, new)

    def _invalid(self, thread_id: str, event: NewEvent, exc: Exception) -> InvalidEvent:
        """The :class:`InvalidEvent` naming the field of ``event`` that failed to encode
        with ``exc`` (fastavro's validator finds it)."""
        event_type = event.payload.TYPE
        datum = {**_envelope_values(thread_id, event), "seq": 1, "payload": to_avro(event.payload)}
        try:
            fastavro.validation.validate(datum, self._parsed, raise_errors=True)
        except fastavro.validation.ValidationError as err:
            first = err.errors[0]
            field = _field_path(str(first.field))
            return InvalidEvent(
                event_type, field, f"expected Avro {_short(first.schema)}, got {first.datum!r}"
            )
        return InvalidEvent(event_type, "(unknown)", f"{type(exc).__name__}: {exc}")

    # --- decoding ----------------------------------------------------------------------

    def schema_version(self, data: bytes) -> int | None:
        """Released schema version that wrote ``data`` (None if unreleased or unknown)."""
        return self._versions.get(bytes(data[2:HEADER_SIZE]))

    def decode(self, data: bytes, position: int = 0) -> RecordedEvent:
        """Decode one single-object encoded event.

        Args:
            data: The encoded event.
            position: Log position to stamp on the result.

        Raises:
            UnknownSchema: the fingerprint names no known schema version.
            CorruptEvent: the bytes are truncated or do not follow the writer schema.
        """
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise CorruptEvent(
                None,
                "(header)",
                f"not Avro single-object encoding: expected marker c301 and 8 fingerprint "
                f"bytes, found {bytes(data[:HEADER_SIZE]).hex() or 'nothing'}",
            )
        writer = self._writers.get(bytes(data[2:HEADER_SIZE]))
        if writer is None:
            known = [f"v{v.version}={v.fingerprint.hex()}" for v in self.schemas.history]
            raise UnknownSchema(bytes(data[2:HEADER_SIZE]), known)
        if writer[1] is None:
            return self._decode_current(data, position)
        return self._decode_resolved(data, position, writer)

    def peek(self, data: bytes) -> EventKey:
        """Read an encoded event's id, thread, tenant, seq and time, without the rest.

        Events of the current schema are read from the header and the envelope's leading
        fields only (a few microseconds, whatever the payload); the bytes after them are
        not checked. Events of older versions are decoded in full.

        Raises:
            UnknownSchema: the fingerprint names no known schema version.
            CorruptEvent: the header or the fields read are truncated or ill-formed.
        """
        if self._peekable and data[:HEADER_SIZE] == self._prefix:
            try:
                head = _short_head(data)
                if head is not None:
                    return EventKey(head[0], head[1], head[2], head[3], head[5])
                event_id, pos = read_string(data, HEADER_SIZE)
                thread_id, pos = read_string(data, pos)
                tenant, pos = read_string(data, pos)
                seq, pos = read_long(data, pos)
                _, pos = read_string(data, pos)
                millis, pos = read_long(data, pos)
            except Exception as exc:  # IndexError, UnicodeDecodeError, ValueError
                raise _diagnose(data, self.schemas.envelope, self._named) from exc
            return EventKey(event_id, thread_id, tenant, seq, millis)
        event = self.decode(data)
        millis = math.floor(event.occurred_at.timestamp() * 1000)
        return EventKey(event.event_id, event.thread_id, event.tenant, event.seq, millis)

    def _decode_current(self, data: bytes, position: int) -> RecordedEvent:
        """Decode an event written with the current schema: the envelope's fields and the
        payload read directly (:mod:`eventstore._avro_payload`)."""
        event = _new_recorded(RecordedEvent)
        try:
            short = _read_short_envelope(data, event) if self._short_envelope else None
            if short is None:
                pos = HEADER_SIZE
                for read, set_ in self._readers:
                    value, pos = read(data, pos)
                    set_(event, value)
            else:
                pos = short
            branch, pos = read_long(data, pos)
            if branch < 0:
                raise IndexError(f"union branch {branch}")
            name, read_payload = self._branches[branch]
            payload, pos = read_payload(data, pos)
        except Exception as exc:  # decode failures come as many types; diagnose names the field
            raise _diagnose(data, self.schemas.envelope, self._named) from exc
        if pos != len(data):
            raise CorruptEvent(event.type, "(end)", f"{len(data) - pos} bytes left after the event")
        if name[len(_NS_PREFIX) :] != event.type:
            raise CorruptEvent(
                event.type, "payload", f"type says {event.type!r} but the payload is a {name}"
            )
        _set_payload(event, typing.cast(Payload, payload))
        _set_position(event, position)
        return event

    def _decode_resolved(
        self, data: bytes, position: int, writer: tuple[Any, Any, dict[str, Any], dict[str, Any]]
    ) -> RecordedEvent:
        """Decode with fastavro, resolving the writer's schema version to the current one."""
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            rec = typing.cast(dict[str, Any], fastavro.schemaless_reader(buf, writer[0], writer[1]))
        except Exception as exc:  # decode failures come as many types; diagnose names the field
            raise _diagnose(data, writer[2], writer[3]) from exc
        if buf.tell() != len(data):
            raise CorruptEvent(
                rec["type"], "(end)", f"{len(data) - buf.tell()} bytes left after the event"
            )
        try:
            # The envelope's type names the union branch; reading it instead of asking
            # fastavro for record names keeps the hot path on fastavro's fast reader.
            payload = from_avro(_NS_PREFIX + rec["type"], rec["payload"])
        except (KeyError, TypeError) as exc:
            raise CorruptEvent(
                rec["type"], "payload", f"payload does not match type {rec['type']!r}: {exc}"
            ) from exc
        event = _new_recorded(RecordedEvent)
        for name, set_ in _ENVELOPE_SETTERS:
            set_(event, rec[name])
        _set_payload(event, payload)
        _set_position(event, position)
        return event


# RecordedEvent is a frozen dataclass; decoded values already fit it, so it is filled slot by
# slot, which costs half of its __init__ on the read path.
_new_recorded = object.__new__
_ENVELOPE_SETTERS: list[tuple[str, Callable[[RecordedEvent, Any], None]]] = [
    (name, getattr(RecordedEvent, name).__set__)
    for name in (
        "event_id",
        "thread_id",
        "tenant",
        "seq",
        "type",
        "occurred_at",
        "actor",
        "version_vector",
        "causation_id",
        "correlation_id",
        "idempotency_key",
    )
]
(
    _set_event_id,
    _set_thread_id,
    _set_tenant,
    _set_seq,
    _set_type,
    _set_occurred_at,
    _set_actor,
    _set_version_vector,
    _set_causation_id,
    _set_correlation_id,
    _set_idempotency_key,
) = [setter for _, setter in _ENVELOPE_SETTERS]
_set_payload: Callable[[RecordedEvent, Payload], None] = getattr(RecordedEvent, "payload").__set__  # noqa: B009
_set_position: Callable[[RecordedEvent, int], None] = getattr(RecordedEvent, "position").__set__  # noqa: B009


def _check_text(event_type: str, field: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidEvent(event_type, field, f"must be a non-empty string, got {value!r}")


def _short(schema: object) -> str:
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    if isinstance(schema, list):
        return " | ".join(_short(s) for s in schema)
    return str(schema)


def _field_path(path: str) -> str:
    """Turn fastavro's ``agentlog.memory.Set.key`` into ``payload.key``."""
    if path.startswith("agentlog.Envelope."):
        return path[len("agentlog.Envelope.") :]
    for marker in (".a2a.", ".memory.", ".command.", ".routing.", ".llm.", ".thread."):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return "payload." + rest.split(".", 1)[1] if "." in rest else "payload"
    return path


def _diagnose(data: bytes, schema: Mapping[str, Any], named: dict[str, Any]) -> CorruptEvent:
    """Re-read ``data`` field by field to name the first field that cannot be decoded."""
    buf = io.BytesIO(data)
    buf.seek(HEADER_SIZE)
    event_type: str | None = None
    for field in schema["fields"]:
        name = field["name"]
        if name == "payload":
            return _diagnose_payload(buf, field["type"], named, event_type)
        try:
            value = _read(buf, field["type"], named)
        except Exception as exc:  # any read failure is the answer we are looking for
            return CorruptEvent(event_type, name, _problem(exc))
        if name == "type":
            event_type = value
    return CorruptEvent(event_type, "(end)", "event does not match its writer schema")


def _diagnose_payload(
    buf: io.BytesIO, branches: list[Any], named: dict[str, Any], event_type: str | None
) -> CorruptEvent:
    try:
        index = _read_long(buf)
    except EOFError as exc:
        return CorruptEvent(event_type, "payload", _problem(exc))
    if not 0 <= index < len(branches):
        return CorruptEvent(
            event_type, "payload", f"union branch {index} does not exist ({len(branches)} known)"
        )
    branch = branches[index]
    record = named[branch if isinstance(branch, str) else branch["name"]]
    for field in record["fields"]:
        try:
            _read(buf, field["type"], named)
        except Exception as exc:  # any read failure is the answer we are looking for
            return CorruptEvent(event_type, f"payload.{field['name']}", _problem(exc))
    return CorruptEvent(event_type, "payload", "payload does not match its record schema")


def _read(buf: io.BytesIO, schema: Any, named: dict[str, Any]) -> Any:
    parsed = fastavro.parse_schema(schema, named_schemas=dict(named), _force=True)
    return fastavro.schemaless_reader(buf, parsed, None)


def _problem(exc: BaseException) -> str:
    if isinstance(exc, (EOFError, StopIteration)) or "EOF" in type(exc).__name__:
        return "bytes end here (truncated event)"
    return f"{type(exc).__name__}: {exc}"
