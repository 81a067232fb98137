"""The direct payload writers and readers: the same bytes and objects as fastavro's route,
strict about value types, and clear about the schemas they do not handle."""

from __future__ import annotations

import dataclasses
import io
import struct
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import Codec, SchemaError
from eventstore._avro_payload import Unsupported, compile_record
from eventstore.payloads import (
    RECORD_TYPES,
    Candidate,
    MemoryDelete,
    MemorySet,
    Message,
    Part,
    Payload,
    Record,
    RoutingDecided,
    from_avro,
    to_avro,
)
from eventstore.schema import expand, shipped_schemas
from tests.samples import SAMPLES, payloads

SCHEMAS = shipped_schemas()
CODEC = Codec()


def _fastavro_bytes(payload: Payload) -> bytes:
    name, plain = to_avro(payload)
    parsed = fastavro.parse_schema(expand(name, SCHEMAS.named), named_schemas={})
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, plain)
    return out.getvalue()


def _fastavro_object(name: str, data: bytes) -> Payload:
    parsed = fastavro.parse_schema(expand(name, SCHEMAS.named), named_schemas={})
    plain = fastavro.schemaless_reader(io.BytesIO(data), parsed, None)
    return from_avro(name, typing.cast(dict[str, Any], plain))


def _direct(name: str) -> Any:
    return compile_record(expand(name, SCHEMAS.named), RECORD_TYPES)


def test_every_payload_record_has_a_direct_route() -> None:
    assert set(CODEC._fast.readers) == set(SCHEMAS.payload_names())
    assert {c.AVRO_NAME for c in CODEC._fast.writers} == set(SCHEMAS.payload_names())


@settings(max_examples=300, deadline=None)
@given(payload=payloads)
def test_direct_bytes_and_objects_equal_fastavros(payload: Payload) -> None:
    write, read = _direct(payload.AVRO_NAME)
    data = write(payload)
    assert data == _fastavro_bytes(payload)
    obj, end = read(data, 0)
    assert end == len(data)
    assert obj == payload == _fastavro_object(payload.AVRO_NAME, data)
    assert type(obj) is type(payload)


@pytest.mark.parametrize("payload", list(SAMPLES.values()), ids=list(SAMPLES))
def test_samples_read_back_at_an_offset(payload: Payload) -> None:
    write, read = _direct(payload.AVRO_NAME)
    data = b"\x07\x07" + write(payload)
    obj, end = read(data, 2)
    assert (obj, end) == (payload, len(data))


def test_values_the_direct_writer_refuses_take_fastavros_route() -> None:
    # An int where a float is declared, a list where a tuple is: fastavro takes them.
    decided = dataclasses.replace(
        SAMPLES["routing.Decided"],
        confidence=1,
        candidates=[Candidate(name="a", kind="agent", score=True)],  # type: ignore[arg-type]
    )
    write, _ = _direct(RoutingDecided.AVRO_NAME)
    with pytest.raises(TypeError):
        write(decided)
    assert CODEC._payload_bytes(decided)[1:] == _fastavro_bytes(decided)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (MemorySet(key="k", value_json="1", kind="nope"), KeyError),  # type: ignore[arg-type]
        (MemorySet(key=b"k", value_json="1"), TypeError),  # type: ignore[arg-type]
        (MemoryDelete(key=1), TypeError),  # type: ignore[arg-type]
        (Message(message_id="m", role="user", parts=(Part(text=3),)), TypeError),  # type: ignore[arg-type]
        (Message(message_id="m", role="user", parts="p"), TypeError),  # type: ignore[arg-type]
        (Message(message_id="m", role="user", parts=(MemoryDelete(key="k"),)), TypeError),  # type: ignore[arg-type]
    ],
)
def test_misfits_raise_for_the_codec_to_diagnose(payload: Payload, error: type[Exception]) -> None:
    write, _ = _direct(payload.AVRO_NAME)
    with pytest.raises(error):
        write(payload)


# --- every supported type, on a record of our own -----------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Inner(Record):
    AVRO_NAME: ClassVar[str] = "test.Inner"
    n: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Every(Record):
    AVRO_NAME: ClassVar[str] = "test.Every"
    nothing: None
    flag: bool
    small: int
    big: int
    ratio: float
    blob: bytes
    kind: str
    inner: Inner | None
    again: Inner
    names: tuple[str, ...]
    counts: Mapping[str, int]
    inners: Mapping[str, Inner]


EVERY_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "test.Every",
    "fields": [
        {"name": "nothing", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": {"type": "long"}},
        {"name": "ratio", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "kind", "type": {"type": "enum", "name": "test.Kind", "symbols": ["a", "b"]}},
        {
            "name": "inner",
            "type": [
                "null",
                {"type": "record", "name": "test.Inner", "fields": [{"name": "n", "type": "long"}]},
            ],
        },
        {"name": "again", "type": "test.Inner"},
        {"name": "names", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "inners", "type": {"type": "map", "values": "test.Inner"}},
    ],
}
CLASSES = {"test.Every": Every, "test.Inner": Inner}
PARSED = fastavro.parse_schema(EVERY_SCHEMA, named_schemas={})

_every = st.builds(
    Every,
    nothing=st.none(),
    flag=st.booleans(),
    small=st.integers(-(2**31), 2**31 - 1),
    big=st.integers(-(2**63), 2**63 - 1),
    ratio=st.floats(allow_nan=False),
    blob=st.binary(max_size=20),
    kind=st.sampled_from(["a", "b"]),
    inner=st.none() | st.builds(Inner, n=st.integers(-5, 5)),
    again=st.builds(Inner, n=st.integers(-(2**63), 2**63 - 1)),
    names=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    counts=st.dictionaries(st.text(max_size=5), st.integers(-99, 99), max_size=3),
    inners=st.dictionaries(st.text(max_size=5), st.builds(Inner, n=st.integers(-9, 9)), max_size=2),
)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Record):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


@settings(max_examples=200, deadline=None)
@given(value=_every)
def test_every_supported_type_matches_fastavro(value: Every) -> None:
    compiled = compile_record(EVERY_SCHEMA, CLASSES)
    write, read = compiled
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED, _plain(value))
    assert write(value) == out.getvalue()
    assert read(out.getvalue(), 0) == (value, len(out.getvalue()))


def _every_value(**changes: Any) -> Every:
    base = Every(
        nothing=None,
        flag=True,
        small=1,
        big=2,
        ratio=0.5,
        blob=b"x",
        kind="a",
        inner=None,
        again=Inner(n=1),
        names=(),
        counts={},
        inners={},
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"nothing": 0},
        {"flag": 1},
        {"small": 2**31},
        {"small": True},
        {"big": 1.0},
        {"ratio": "0.5"},
        {"blob": bytearray(b"x")},
        {"kind": "c"},
        {"names": "ab"},
        {"counts": [("a", 1)]},
        {"again": Every},
    ],
    ids=lambda c: next(iter(c)),
)
def test_each_writer_refuses_a_value_of_another_type(changes: dict[str, Any]) -> None:
    compiled = compile_record(EVERY_SCHEMA, CLASSES)
    with pytest.raises((TypeError, ValueError, KeyError)):
        compiled[0](_every_value(**changes))


def _encoded(**changes: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED, _plain(_every_value(**changes)))
    return out.getvalue()


def test_blocked_arrays_and_maps_read_like_fastavro() -> None:
    # Writers may split arrays and maps into blocks, with a negative count and a byte size.
    compiled = compile_record(EVERY_SCHEMA, CLASSES)
    _, read = compiled
    data = _encoded()
    # flag .. kind, then inner (null), again, then names [] and counts {} and inners {}
    prefix, tail = data[:-3], data[-3:]
    assert tail == b"\x00\x00\x00"
    blocked_names = b"\x01\x04\x02a\x02\x02b\x00"  # count -1, 2 bytes: "a"; count 1: "b"; end
    blocked_counts = b"\x02\x02k\x04\x00"  # one entry k=2, end
    value, end = read(prefix + blocked_names + blocked_counts + b"\x00", 0)
    assert value.names == ("a", "b")
    assert value.counts == {"k": 2}
    assert end == len(prefix + blocked_names + blocked_counts) + 1


def test_every_truncation_raises() -> None:
    compiled = compile_record(EVERY_SCHEMA, CLASSES)
    data = _encoded(inner=Inner(n=300), names=("ab",), counts={"k": 1})
    for cut in range(len(data)):
        with pytest.raises((IndexError, ValueError, struct.error)):
            compiled[1](data[:cut], 0)


def test_bad_enum_index_and_union_branch_are_refused() -> None:
    compiled = compile_record(EVERY_SCHEMA, CLASSES)
    data = _encoded()
    # the fields before kind: flag (1), small (1), big (1), ratio (8), blob (2)
    at_kind = 1 + 1 + 1 + 8 + 2
    assert data[at_kind] == 0
    with pytest.raises(ValueError, match="enum index 2"):
        compiled[1](data[:at_kind] + b"\x04" + data[at_kind + 1 :], 0)
    with pytest.raises(ValueError, match="enum index -1"):
        compiled[1](data[:at_kind] + b"\x01" + data[at_kind + 1 :], 0)
    with pytest.raises(ValueError, match="union branch 2"):
        compiled[1](data[: at_kind + 1] + b"\x04" + data[at_kind + 2 :], 0)


@pytest.mark.parametrize(
    ("field_type", "problem"),
    [
        (["null", "string", "long"], "only \\[null, T\\]"),
        (["string", "null"], "only \\[null, T\\]"),
        ({"type": "fixed", "name": "test.F", "size": 4}, "Avro type 'fixed'"),
        ({"type": "string", "logicalType": "uuid"}, "logical type 'uuid'"),
        ("float", "type 'float'"),
        ("test.Undefined", "used before it is defined"),
        ({"type": "record", "name": "test.NoClass", "fields": []}, "no payload class"),
    ],
    ids=["three-branch union", "null second", "fixed", "uuid", "float", "undefined", "no class"],
)
def test_schemas_the_direct_route_does_not_handle_are_refused(
    field_type: Any, problem: str
) -> None:
    schema = {"type": "record", "name": "test.Inner", "fields": [{"name": "n", "type": field_type}]}
    with pytest.raises(Unsupported, match=problem):
        compile_record(schema, CLASSES)


def test_a_codec_names_a_payload_record_it_cannot_read_directly() -> None:
    schemas = shipped_schemas()
    named = dict(schemas.named)
    name = "agentlog.memory.Delete"
    named[name] = {**named[name], "fields": [{"name": "key", "type": "float"}]}
    with pytest.raises(SchemaError, match=r"agentlog\.memory\.Delete.*_avro_payload\.py"):
        Codec(dataclasses.replace(schemas, named=named))
