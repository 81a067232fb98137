"""The payload classes mirror the .avsc files exactly: the files are the contract."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from eventstore.payloads import (
    PAYLOAD_TYPES,
    Candidate,
    FileRef,
    Part,
    Record,
    Sibling,
    from_avro,
    payload_class,
    to_avro,
)
from eventstore.schema import shipped_schemas
from tests.samples import SAMPLES

NAMED = shipped_schemas().named
RECORDS: list[type[Record]] = [FileRef, Part, Sibling, Candidate, *PAYLOAD_TYPES.values()]
_PRIMS = {str: "string", int: "long", float: "double", bool: "boolean", bytes: "bytes"}


def _avro_of(tp: Any) -> Any:
    """The Avro type a Python annotation stands for, in the .avsc files' notation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _PRIMS:
        return _PRIMS[tp]
    if origin is typing.Literal:
        return ("enum", frozenset(args))
    if origin is tuple:
        return {"type": "array", "items": _avro_of(args[0])}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.AVRO_NAME
    if getattr(tp, "__name__", "") == "datetime":
        return {"type": "long", "logicalType": "timestamp-millis"}
    if origin is not None and "Mapping" in repr(origin):
        return {"type": "map", "values": _avro_of(args[1])}
    inner = [a for a in args if a is not type(None)]
    return ["null", _avro_of(inner[0])]


def _normalise(schema: Any) -> Any:
    if isinstance(schema, str) and schema in NAMED and NAMED[schema]["type"] == "enum":
        return ("enum", frozenset(NAMED[schema]["symbols"]))
    if isinstance(schema, list):
        return [_normalise(s) for s in schema]
    if isinstance(schema, dict) and schema.get("type") == "array":
        return {"type": "array", "items": _normalise(schema["items"])}
    if isinstance(schema, dict) and schema.get("type") == "map":
        return {"type": "map", "values": _normalise(schema["values"])}
    return schema


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.AVRO_NAME)
def test_class_matches_its_avsc_record(cls: type[Record]) -> None:
    record = NAMED[cls.AVRO_NAME]
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    assert [f.name for f in fields] == [f["name"] for f in record["fields"]]
    for py, avsc in zip(fields, record["fields"], strict=True):
        assert _avro_of(hints[py.name]) == _normalise(avsc["type"]), py.name
        has_default = py.default is not dataclasses.MISSING
        assert has_default == ("default" in avsc), f"{py.name}: default in one place only"
        if has_default:
            expected = (
                tuple(avsc["default"]) if isinstance(avsc["default"], list) else avsc["default"]
            )
            assert py.default == expected, py.name


def test_every_payload_record_is_a_branch_of_the_envelope() -> None:
    assert shipped_schemas().payload_names() == [c.AVRO_NAME for c in PAYLOAD_TYPES.values()]
    for event_type, cls in PAYLOAD_TYPES.items():
        assert cls.AVRO_NAME == f"agentlog.{event_type}"


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_plain_value_conversion_round_trips(event_type: str) -> None:
    payload = SAMPLES[event_type]
    assert from_avro(*to_avro(payload)) == payload


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known types: a2a\.Message"):
        payload_class("memory.Sett")


def test_payload_records_have_unique_short_names() -> None:
    # fastavro resolves union branches of old writers by short name: two payload records
    # named alike (memory.Set and a future config.Set) could be read into the wrong branch.
    short = [name.rsplit(".", 1)[1] for name in shipped_schemas().payload_names()]
    assert len(short) == len(set(short)), sorted(short)
