"""The codec: single-object encoding, fingerprints, round trips and clear decode errors."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from datetime import UTC, datetime

import avro.io
import avro.schema
import fastavro
import fastavro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import Codec, CorruptEvent, InvalidEvent, NewEvent, UnknownSchema
from eventstore.codec import HEADER_SIZE, MAGIC, encode_long
from eventstore.payloads import to_avro
from eventstore.schema import SCHEMA_DIR, canonical_form, crc64_avro, fingerprint, shipped_schemas
from tests.samples import SAMPLES, T0, event, new_events

CODEC = Codec()


def _full_record(thread_id: str, seq: int, e: NewEvent) -> dict[str, object]:
    return {
        "event_id": e.event_id,
        "thread_id": thread_id,
        "tenant": e.tenant,
        "seq": seq,
        "type": e.type,
        "occurred_at": e.occurred_at,
        "actor": e.actor,
        "version_vector": dict(e.version_vector),
        "causation_id": e.causation_id,
        "correlation_id": e.correlation_id,
        "idempotency_key": e.idempotency_key,
        "payload": to_avro(e.payload),
    }


def test_crc64_avro_matches_the_specification_vectors() -> None:
    # test vectors from the Avro specification's fingerprint section
    assert crc64_avro(b'"null"') == 7195948357588979594
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


def test_fingerprint_is_what_a_consumer_with_only_the_avsc_files_computes() -> None:
    # A downstream consumer: load the envelope from the published files with fastavro,
    # take the Parsing Canonical Form and fastavro's own CRC-64-AVRO.
    consumer = fastavro.schema.load_schema(
        str(SCHEMA_DIR / "agentlog.Envelope.avsc"), _write_hint=False
    )
    pcf = fastavro.schema.to_parsing_canonical_form(consumer)
    assert pcf == shipped_schemas().canonical
    assert (
        bytes.fromhex(fastavro.schema.fingerprint(pcf, "CRC-64-AVRO"))
        == shipped_schemas().fingerprint
    )
    assert fingerprint(consumer) == CODEC.fingerprint


def test_every_named_type_is_defined_once_at_its_first_use() -> None:
    text = shipped_schemas().canonical
    for name in shipped_schemas().named:
        assert text.count(f'{{"name":"{name}",') == 1, name


def test_header_is_marker_then_little_endian_fingerprint() -> None:
    data = CODEC.encode("t", 1, event())
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == CODEC.fingerprint
    assert int.from_bytes(data[2:10], "little") == crc64_avro(
        canonical_form(shipped_schemas().envelope).encode()
    )


@settings(max_examples=300, deadline=None)
@given(e=new_events, thread=st.text(min_size=1, max_size=30), seq=st.integers(1, 2**62))
def test_encode_then_decode_is_the_identity(e: NewEvent, thread: str, seq: int) -> None:
    got = CODEC.decode(CODEC.encode(thread, seq, e), position=9)
    assert (got.thread_id, got.seq, got.position) == (thread, seq, 9)
    assert got.payload == e.payload
    assert (got.event_id, got.tenant, got.actor, got.type) == (
        e.event_id,
        e.tenant,
        e.actor,
        e.type,
    )
    assert got.occurred_at == e.occurred_at
    assert dict(got.version_vector) == dict(e.version_vector)
    assert (got.causation_id, got.correlation_id, got.idempotency_key) == (
        e.causation_id,
        e.correlation_id,
        e.idempotency_key,
    )


@settings(max_examples=200, deadline=None)
@given(e=new_events, seq=st.integers(1, 2**62))
def test_split_encoding_equals_encoding_the_whole_envelope(e: NewEvent, seq: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf, fastavro.parse_schema(shipped_schemas().envelope), _full_record("t-1", seq, e)
    )
    assert CODEC.encode("t-1", seq, e) == MAGIC + CODEC.fingerprint + buf.getvalue()


# The usual envelope is encoded by calling its field encoders in order; another envelope
# goes through a dict of values and the encoders listed per field, as this codec does.
GENERAL = Codec()
GENERAL._short_writers = None


@settings(max_examples=200, deadline=None)
@given(e=new_events, seq=st.integers(1, 2**62))
def test_the_short_encoding_path_and_the_general_encoders_agree(e: NewEvent, seq: int) -> None:
    assert CODEC.encode("t-1", seq, e) == GENERAL.encode("t-1", seq, e)


def test_the_general_encoders_name_the_field_that_does_not_fit_too() -> None:
    with pytest.raises(InvalidEvent) as info:
        GENERAL.encode("t", 1, event(version_vector={"a": "not a number"}))  # type: ignore[dict-item]
    assert info.value.field == "version_vector"


@given(st.integers(-(2**63), 2**63 - 1))
def test_encode_long_is_avro_long(n: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert encode_long(n) == buf.getvalue()


def test_apache_avro_decodes_our_bytes() -> None:
    # An independent implementation (the Apache Avro Python library) reads every sample.
    schema = avro.schema.parse(json.dumps(shipped_schemas().envelope))
    reader = avro.io.DatumReader(schema)
    for payload in SAMPLES.values():
        data = CODEC.encode("t-1", 3, event(payload, occurred_at=T0))
        record = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
        assert record["type"] == payload.TYPE
        assert record["seq"] == 3
        assert record["thread_id"] == "t-1"


def test_every_truncation_gives_a_codec_error_naming_the_field() -> None:
    data = CODEC.encode("thread-1", 5, event(SAMPLES["a2a.Message"]))
    fields = set()
    for cut in range(len(data)):
        with pytest.raises(CorruptEvent) as info:
            CODEC.decode(data[:cut])
        fields.add(info.value.field)
        if cut > 90:  # past header, ids, seq and type
            assert info.value.event_type == "a2a.Message"
    assert {"(header)", "event_id", "payload.parts"} <= fields


def test_truncated_payload_names_type_and_field() -> None:
    data = CODEC.encode("t", 1, event(SAMPLES["memory.Set"]))
    with pytest.raises(CorruptEvent) as info:
        CODEC.decode(data[:-3])
    assert info.value.event_type == "memory.Set"
    assert info.value.field.startswith("payload.")
    assert "memory.Set" in str(info.value) and "truncated" in str(info.value)


def test_trailing_bytes_are_refused() -> None:
    data = CODEC.encode("t", 1, event())
    with pytest.raises(CorruptEvent, match="left after"):
        CODEC.decode(data + b"\x00\x00")


def test_negative_payload_branch_is_refused() -> None:
    # Branch -1 must not pick the union's last record the way a Python index would.
    e = event(SAMPLES["thread.Forked"])
    data = CODEC.encode("t-1", 1, e)
    at = len(data) - len(CODEC._payload_bytes(e.payload))
    with pytest.raises(CorruptEvent, match="union branch -1") as info:
        CODEC.decode(data[:at] + b"\x01" + data[at + 1 :])
    assert info.value.field == "payload"


def test_unknown_fingerprint_is_refused() -> None:
    data = bytearray(CODEC.encode("t", 1, event()))
    data[2:10] = b"\x01" * 8
    with pytest.raises(UnknownSchema) as info:
        CODEC.decode(bytes(data))
    assert info.value.fingerprint == b"\x01" * 8
    assert "0101010101010101" in str(info.value)


def test_not_single_object_encoding_is_refused() -> None:
    with pytest.raises(CorruptEvent, match="c301"):
        CODEC.decode(b'{"json": "no"}')


def test_type_that_disagrees_with_the_payload_is_refused() -> None:
    e = event(SAMPLES["memory.Delete"])
    record = _full_record("t", 1, e)
    record["type"] = "memory.Set"
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(shipped_schemas().envelope), record)
    with pytest.raises(CorruptEvent) as info:
        CODEC.decode(MAGIC + CODEC.fingerprint + buf.getvalue())
    assert info.value.field == "payload"


@pytest.mark.parametrize(
    ("change", "field"), [({"key": None}, "payload.key"), ({"kind": "bogus"}, "payload.kind")]
)
def test_payload_that_does_not_fit_its_schema_names_the_field(
    change: dict[str, object], field: str
) -> None:
    bad = dataclasses.replace(SAMPLES["memory.Set"], **change)  # type: ignore[type-var]
    with pytest.raises(InvalidEvent) as info:
        CODEC.encode("t", 1, event(bad))
    assert (info.value.event_type, info.value.field) == ("memory.Set", field)


def test_envelope_field_that_does_not_fit_is_named() -> None:
    with pytest.raises(InvalidEvent) as info:
        CODEC.encode("t", 1, event(version_vector={"a": "not a number"}))  # type: ignore[dict-item]
    assert info.value.field == "version_vector"


@settings(max_examples=100, deadline=None)
@given(
    e=new_events,
    micros=st.integers(0, 999_999),
    thread=st.text(min_size=1, max_size=10),
)
def test_sub_millisecond_times_are_truncated_like_fastavro(
    e: NewEvent, micros: int, thread: str
) -> None:
    e = dataclasses.replace(e, occurred_at=e.occurred_at.replace(microsecond=micros))
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf, fastavro.parse_schema(shipped_schemas().envelope), _full_record(thread, 7, e)
    )
    assert CODEC.encode(thread, 7, e) == MAGIC + CODEC.fingerprint + buf.getvalue()


@settings(max_examples=200, deadline=None)
@given(e=new_events, seq=st.integers(1, 2**62))
def test_direct_and_fastavro_decoding_agree(e: NewEvent, seq: int) -> None:
    # Events of the current schema are read by the direct reader; older versions go
    # through fastavro with schema resolution. Both must give the same event.
    data = CODEC.encode("t-9", seq, e)
    writer = CODEC._writers[CODEC.fingerprint]
    assert CODEC._decode_current(data, 4) == CODEC._decode_resolved(data, 4, writer)


@settings(max_examples=300, deadline=None)
@given(
    e=new_events,
    seq=st.integers(-70, 70)
    | st.sampled_from([-(2**20) - 1, -(2**20), 2**13 - 1, 2**13, 2**20 - 1, 2**20])
    | st.integers(-(2**21), 2**21)
    | st.integers(1, 2**62),
)
def test_the_short_envelope_path_and_the_general_readers_agree(e: NewEvent, seq: int) -> None:
    # Usual envelopes are read in one function; any field of another shape sends the
    # event to the per-field readers. Both must give what fastavro gives.
    data = CODEC.encode("t-9", seq, e)
    general = Codec()
    general._short_envelope = False
    writer = CODEC._writers[CODEC.fingerprint]
    expected = CODEC._decode_resolved(data, 4, writer)
    assert CODEC._decode_current(data, 4) == expected == general._decode_current(data, 4)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"version_vector": {"a": 1}},
        {"version_vector": {"planner": 70, "critic": 2**40, "x" * 70: 3}},  # long ones
        {"version_vector": {f"agent-{i}": i for i in range(70)}},  # a count of two bytes
        {"causation_id": "c", "correlation_id": "r" * 63, "idempotency_key": "k"},
        {"causation_id": "c" * 64},  # an optional string of a two-byte length
        {"actor": "a" * 64},
        {"occurred_at": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)},  # a short time varint
        {"occurred_at": datetime(2100, 1, 1, tzinfo=UTC)},  # seven bytes
    ],
)
def test_every_shape_of_envelope_decodes_alike_and_cuts_never_decode(
    fields: dict[str, object],
) -> None:
    new = event(**fields)
    data = CODEC.encode("thread", 3, new)
    writer = CODEC._writers[CODEC.fingerprint]
    decoded = CODEC.decode(data, 5)
    assert decoded == CODEC._decode_resolved(data, 5, writer)
    assert (decoded.actor, decoded.version_vector, decoded.causation_id) == (
        new.actor,
        new.version_vector,
        new.causation_id,
    )
    for cut in range(HEADER_SIZE, len(data)):
        with pytest.raises(CorruptEvent):
            CODEC.decode(data[:cut])


def test_a_version_vector_in_several_blocks_and_a_bad_union_branch_take_the_general_path() -> None:
    # Our writer puts a map in one block; other Avro writers may use several.
    data = CODEC.encode("t", 1, event(version_vector={"a": 1, "b": 2}))
    one_block = b"\x04\x02a\x02\x02b\x04\x00"
    assert data.count(one_block) == 1
    two_blocks = data.replace(one_block, b"\x02\x02a\x02\x02\x02b\x04\x00")
    assert CODEC.decode(two_blocks).version_vector == {"a": 1, "b": 2}
    # causation_id's union branch 2 (of two): an error naming the field
    data = CODEC.encode("t", 1, event(causation_id="c"))
    tail = b"\x00\x02\x02c\x00\x00"  # empty vector, branch 1 and "c", two nulls
    assert data.count(tail) == 1
    with pytest.raises(CorruptEvent) as info:
        CODEC.decode(data.replace(tail, b"\x00\x04\x02c\x00\x00"))
    assert info.value.field == "causation_id"


def test_peek_reads_the_identifying_fields_without_the_payload() -> None:
    codec = Codec()
    for payload in SAMPLES.values():
        new = event(payload, tenant="acme")
        data = codec.encode("thread-\u00e9", 7, new)
        key = codec.peek(data)
        full = codec.decode(data)
        assert (key.event_id, key.thread_id, key.tenant, key.seq) == (
            full.event_id,
            "thread-\u00e9",
            "acme",
            7,
        )
        assert key.occurred_ms == math.floor(full.occurred_at.timestamp() * 1000)


@pytest.mark.parametrize(
    ("thread_id", "tenant", "seq", "occurred_at", "event_id"),
    [
        ("t", "acme", 1, datetime(2026, 12, 2, 15, 0, 0, 123000, tzinfo=UTC), None),
        ("t" * 63, "a" * 63, 63, datetime(2026, 1, 1, tzinfo=UTC), None),
        ("t", "acme", 1, datetime(2026, 1, 1, tzinfo=UTC), "custom-" + "e" * 70),  # long id
        ("t" * 64, "acme", 1, datetime(2026, 1, 1, tzinfo=UTC), None),  # two-byte length
        ("t", "b" * 200, 1, datetime(2026, 1, 1, tzinfo=UTC), None),
        ("t", "acme", 64, datetime(2026, 1, 1, tzinfo=UTC), None),  # two-byte seq
        ("t", "acme", 2**40, datetime(2026, 1, 1, tzinfo=UTC), None),
        ("t", "acme", 1, datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), None),  # a short time varint
        ("t", "acme", 1, datetime(1800, 1, 1, tzinfo=UTC), None),  # before the epoch, long
        ("t", "acme", 1, datetime(2100, 1, 1, tzinfo=UTC), None),  # a seven-byte time varint
        ("thread-\u00e9\u4e2d", "t\u00e9nant", 5, datetime(2030, 6, 1, tzinfo=UTC), None),
        ("t", "acme", -3, datetime(2026, 1, 1, tzinfo=UTC), None),
    ],
)
def test_peek_agrees_with_decode_on_every_shape_of_the_leading_fields(
    thread_id: str, tenant: str, seq: int, occurred_at: datetime, event_id: str | None
) -> None:
    # Usual events take a one-function fast path, the rest the general readers.
    codec = Codec()
    new = event(tenant=tenant, occurred_at=occurred_at, event_id=event_id)
    data = codec.encode(thread_id, seq, new)
    key = codec.peek(data)
    assert tuple(key) == (
        new.event_id,
        thread_id,
        tenant,
        seq,
        math.floor(occurred_at.timestamp() * 1000),
    )
    # cut anywhere: an error naming a field, or (past the leading fields) the same key,
    # never a wrong one
    errors = 0
    for cut in range(HEADER_SIZE, len(data)):
        try:
            assert codec.peek(data[:cut]) == key
        except CorruptEvent as exc:
            assert exc.field
            errors += 1
    assert errors >= len(new.event_id) + len(thread_id) + len(tenant)


def test_peek_names_the_field_of_truncated_leading_bytes() -> None:
    codec = Codec()
    data = codec.encode("t", 1, event())
    with pytest.raises(CorruptEvent) as info:
        codec.peek(data[:14])
    assert info.value.field in {"event_id", "thread_id"}
    with pytest.raises(UnknownSchema):
        codec.peek(data[:2] + b"\x00" * 8 + data[10:])
