"""The Avro compatibility checker, and the shipped schema against every released version."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from eventstore.compat import Incompatibility, check_backward_transitive, check_can_read
from eventstore.errors import SchemaError
from eventstore.schema import SchemaVersion, fingerprint, shipped_schemas


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "x.Color", "symbols": symbols, **extra}


BASE = record(
    "x.Item",
    field("key", "string"),
    field("count", "int"),
    field("note", ["null", "string"], default=None),
)


def paths(problems: list[Incompatibility]) -> list[str]:
    return [p.path for p in problems]


def reads(reader: Any, writer: Any, datum: Any) -> Any:
    """What fastavro reads back when ``datum`` is written with ``writer``, read with ``reader``."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), datum)
    buf.seek(0)
    return fastavro.schemaless_reader(
        buf, fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    )


# --- records ------------------------------------------------------------------------------


def test_identical_schemas_are_compatible() -> None:
    assert check_can_read(BASE, BASE) == []


def test_adding_a_field_with_a_default_is_compatible() -> None:
    reader = {**BASE, "fields": [*BASE["fields"], field("ttl", "long", default=0)]}
    assert check_can_read(reader, BASE) == []
    assert reads(reader, BASE, {"key": "k", "count": 1})["ttl"] == 0


def test_adding_a_field_without_a_default_names_the_field() -> None:
    reader = {**BASE, "fields": [*BASE["fields"], field("ttl", "long")]}
    problems = check_can_read(reader, BASE)
    assert paths(problems) == ["x.Item.ttl"]
    assert "ttl" in problems[0].problem and "no default" in problems[0].problem
    assert str(problems[0]).startswith("x.Item.ttl: reader field 'ttl' is not written")
    with pytest.raises(Exception, match="ttl"):
        reads(reader, BASE, {"key": "k", "count": 1})


def test_a_default_that_does_not_fit_the_field_is_reported() -> None:
    # the default of a union is a value of its first branch, here null
    reader = {**BASE, "fields": [*BASE["fields"], field("ttl", ["null", "long"], default=0)]}
    (problem,) = check_can_read(reader, BASE)
    assert problem.path == "x.Item.ttl" and "default is invalid" in problem.problem


def test_removing_a_field_is_compatible() -> None:
    reader = {**BASE, "fields": BASE["fields"][:1]}
    assert check_can_read(reader, BASE) == []
    assert reads(reader, BASE, {"key": "k", "count": 1}) == {"key": "k"}


def test_a_reader_field_alias_finds_the_renamed_writer_field() -> None:
    renamed = record("x.Item", field("name", "string", aliases=["key"]), field("count", "int"))
    assert check_can_read(renamed, BASE) == []
    unaliased = record("x.Item", field("name", "string"), field("count", "int"))
    assert paths(check_can_read(unaliased, BASE)) == ["x.Item.name"]


def test_records_match_by_full_name_or_reader_alias() -> None:
    moved = {**BASE, "name": "y.Item"}
    (problem,) = check_can_read(moved, BASE)
    assert problem.path == "y.Item" and "names differ" in problem.problem
    assert check_can_read({**moved, "aliases": ["x.Item"]}, BASE) == []
    # an unqualified alias is relative to the reader type's namespace
    assert check_can_read({**moved, "aliases": ["Old"]}, {**BASE, "name": "y.Old"}) == []


# --- primitives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_promotions_are_compatible(writer: str, reader: str) -> None:
    assert (
        check_can_read(record("x.R", field("v", reader)), record("x.R", field("v", writer))) == []
    )


def test_int_to_long_is_compatible_but_long_to_int_is_not() -> None:
    ints = record("x.R", field("v", "int"))
    longs = record("x.R", field("v", "long"))
    assert check_can_read(longs, ints) == []
    assert reads(longs, ints, {"v": 7}) == {"v": 7}
    (problem,) = check_can_read(ints, longs)
    assert (problem.path, problem.reader, problem.writer) == ("x.R.v", "int", "long")
    with pytest.raises(fastavro.read.SchemaResolutionError):
        reads(ints, longs, {"v": 7})


@pytest.mark.parametrize(
    ("writer", "reader"), [("double", "float"), ("string", "int"), ("boolean", "null")]
)
def test_unrelated_or_narrowing_primitives_are_incompatible(writer: str, reader: str) -> None:
    assert len(check_can_read(reader, writer)) == 1


def test_logical_types_resolve_as_their_underlying_type() -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    assert check_can_read(millis, "long") == []
    assert check_can_read("long", millis) == []
    (problem,) = check_can_read("int", millis)
    assert problem.writer == "long (timestamp-millis)"


# --- enums and fixed ----------------------------------------------------------------------


def test_removing_an_enum_symbol_is_incompatible_unless_the_reader_has_a_default() -> None:
    writer = enum(["red", "green", "blue"])
    reader = enum(["red", "green"])
    (problem,) = check_can_read(reader, writer)
    assert "['blue']" in problem.problem and problem.reader == "enum x.Color"
    with_default = enum(["red", "green", "unknown"], default="unknown")
    assert check_can_read(with_default, writer) == []
    assert reads(with_default, writer, "blue") == "unknown"


def test_adding_an_enum_symbol_is_compatible() -> None:
    assert check_can_read(enum(["red", "green", "blue"]), enum(["red", "green"])) == []


def test_fixed_needs_the_same_size_and_name() -> None:
    fixed = {"type": "fixed", "name": "x.Hash", "size": 16}
    assert check_can_read(fixed, fixed) == []
    assert "sizes differ" in check_can_read({**fixed, "size": 32}, fixed)[0].problem
    assert "names differ" in check_can_read({**fixed, "name": "x.Other"}, fixed)[0].problem


# --- unions -------------------------------------------------------------------------------


def test_a_branch_added_to_the_reader_union_is_compatible() -> None:
    writer = record("x.R", field("v", ["null", "string"]))
    reader = record("x.R", field("v", ["null", "string", "long"]))
    assert check_can_read(reader, writer) == []


def test_a_branch_removed_from_the_reader_union_is_incompatible() -> None:
    writer = record("x.R", field("v", ["null", "string", "long"]))
    reader = record("x.R", field("v", ["null", "string"]))
    (problem,) = check_can_read(reader, writer)
    assert problem.path == "x.R.v[long]"
    assert problem.reader == "union [null, string]" and problem.writer == "long"
    with pytest.raises(fastavro.read.SchemaResolutionError):
        reads(reader, writer, {"v": 3})


def test_a_reader_union_reads_a_plain_writer_type_by_match_or_promotion() -> None:
    assert check_can_read(["null", "string"], "string") == []
    assert check_can_read(["null", "double"], "int") == []
    assert len(check_can_read(["null", "string"], "boolean")) == 1


def test_a_reader_union_picks_the_named_branch_and_checks_it_deeply() -> None:
    other = record("x.Other", field("a", "int"))
    reader = ["null", other, {**BASE, "fields": [*BASE["fields"], field("ttl", "long")]}]
    assert paths(check_can_read(reader, BASE)) == ["x.Item.ttl"]


def test_every_branch_of_a_writer_union_must_fit_a_plain_reader() -> None:
    (problem,) = check_can_read("string", ["null", "string"])
    assert problem.path == "(root)[null]"
    assert check_can_read("long", ["int", "long"]) == []


# --- nesting and recursion ----------------------------------------------------------------


def test_a_record_nested_in_an_array_is_checked() -> None:
    def order(item: dict[str, Any]) -> dict[str, Any]:
        return record("x.Order", field("items", {"type": "array", "items": item}))

    grown = {**BASE, "fields": [*BASE["fields"], field("price", "double")]}
    assert check_can_read(order(BASE), order(BASE)) == []
    (problem,) = check_can_read(order(grown), order(BASE))
    assert problem.path == "x.Order.items[].price"


def test_map_values_are_checked() -> None:
    def counts(values: str) -> dict[str, Any]:
        return record("x.Stats", field("counts", {"type": "map", "values": values}))

    assert check_can_read(counts("long"), counts("int")) == []
    assert paths(check_can_read(counts("int"), counts("long"))) == ["x.Stats.counts{}"]


def test_named_types_are_referenced_after_their_first_use() -> None:
    point = record("x.Point", field("x", "int"), field("y", "int"))
    line = record("x.Line", field("start", point), field("end", "x.Point"))
    wider = record("x.Point", field("x", "long"), field("y", "int"), field("z", "int"))
    problems = check_can_read(record("x.Line", field("start", wider), field("end", "Point")), line)
    # the pair (x.Point, x.Point) is compared once; its problem is reported once
    assert paths(problems) == ["x.Line.start.z"]


def test_a_recursive_schema_terminates() -> None:
    node = record("x.Node", field("value", "int"), field("next", ["null", "x.Node"], default=None))
    assert check_can_read(node, node) == []
    grown = record(
        "x.Node",
        field("value", "long"),
        field("next", ["null", "Node"], default=None),
        field("label", "string"),
    )
    assert paths(check_can_read(grown, node)) == ["x.Node.label"]
    assert paths(check_can_read(node, grown)) == ["x.Node.value"]


def test_an_undefined_reference_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"writer schema refers to undefined type 'x.Missing'"):
        check_can_read(BASE, record("x.Item", field("key", "x.Missing")))


def test_an_incompatibility_reads_as_one_line() -> None:
    problem = Incompatibility("x.R.v", "int", "long", "types differ")
    assert str(problem) == "x.R.v: types differ (reader: int; writer: long)"


# --- the shipped schemas ------------------------------------------------------------------


def test_backward_transitive_reports_per_version() -> None:
    old = SchemaVersion(1, BASE, fingerprint(BASE))
    newer = {**BASE, "fields": [*BASE["fields"], field("ttl", "long", default=0)]}
    mid = SchemaVersion(2, newer, fingerprint(newer))
    current = {**BASE, "fields": [*BASE["fields"], field("ttl", "long"), field("n", "int")]}
    report = check_backward_transitive(current, [old, mid])
    assert {v: paths(p) for v, p in report.items()} == {
        1: ["x.Item.ttl", "x.Item.n"],
        2: ["x.Item.n"],
    }


def test_the_current_schema_reads_every_released_version() -> None:
    current = shipped_schemas()
    report = check_backward_transitive(current.envelope, current.history)
    assert set(report) == {v.version for v in current.history} and report
    broken = {f"v{v}": [str(p) for p in problems] for v, problems in report.items() if problems}
    assert not broken, f"the current schema cannot read released versions: {broken}"


def test_the_current_schema_is_released() -> None:
    current = shipped_schemas()
    newest = current.history[-1]
    assert current.fingerprint == newest.fingerprint, (
        f"the current envelope schema ({current.fingerprint.hex()}) is not the newest released "
        f"version v{newest.version} ({newest.fingerprint.hex()}): freeze it as "
        f"eventstore/schemas/history/v{newest.version + 1}.json "
        f"('agentlog schemas show Envelope --json') and write its fixtures with "
        f"'python tests/fixtures/schemas/make_fixtures.py {newest.version + 1}'"
    )


# --- defaults and schema forms ------------------------------------------------------------

POINT = record("x.Point", field("x", "int"), field("y", "int", default=0))


@pytest.mark.parametrize(
    ("type_", "default", "valid"),
    [
        ("null", None, True),
        ("null", 0, False),
        ("boolean", False, True),
        ("boolean", 0, False),
        ("int", 2**31 - 1, True),
        ("int", 2**31, False),
        ("int", True, False),
        ("long", -(2**63), True),
        ("long", 1.5, False),
        ("float", 1, True),
        ("double", 1.5, True),
        ("double", "1.5", False),
        ("string", "", True),
        ("bytes", "\u00ff", True),
        ("string", None, False),
        (enum(["red", "green"]), "red", True),
        (enum(["red", "green"]), "blue", False),
        ({"type": "fixed", "name": "x.F", "size": 2}, "ab", True),
        ({"type": "fixed", "name": "x.F", "size": 2}, "abc", False),
        ({"type": "array", "items": "int"}, [1, 2], True),
        ({"type": "array", "items": "int"}, [1, "2"], False),
        ({"type": "array", "items": "int"}, {}, False),
        ({"type": "map", "values": "long"}, {"a": 1}, True),
        ({"type": "map", "values": "long"}, {"a": None}, False),
        ({"type": "map", "values": "long"}, [], False),
        (POINT, {"x": 1}, True),
        (POINT, {"x": 1, "y": 2}, True),
        (POINT, {"y": 2}, False),
        (POINT, {"x": "1"}, False),
        (POINT, "1", False),
        (["string", "null"], "a", True),
        (["string", "null"], None, False),
        ([], None, False),
    ],
)
def test_a_default_must_be_a_value_of_the_field_type(type_: Any, default: Any, valid: bool) -> None:
    reader = record("x.R", field("added", type_, default=default))
    problems = check_can_read(reader, record("x.R"))
    assert (problems == []) is valid, problems


def test_named_types_may_be_referenced_in_every_form() -> None:
    plain = record("x.Line", field("start", POINT), field("end", "x.Point"))
    # {"type": name}, a nested {"type": {...}}, and a name outside the enclosing namespace
    wrapped = record(
        "x.Line",
        field("start", {"type": {**POINT, "name": "Point", "namespace": "x"}}),
        field("end", {"type": "Point"}),
    )
    assert check_can_read(wrapped, plain) == []
    assert check_can_read(plain, wrapped) == []
    global_point = {**POINT, "name": "Point", "namespace": ""}
    outside = record("x.Line", field("start", global_point), field("end", "Point"))
    assert check_can_read(outside, outside) == []


def test_arrays_and_maps_are_described_by_their_contents() -> None:
    (problem,) = check_can_read({"type": "array", "items": "int"}, {"type": "map", "values": "int"})
    assert (problem.reader, problem.writer) == ("array<int>", "map<int>")


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "record", "fields": []},
        {"type": 3},
        {"kind": "record"},
        7,
        [POINT, {**POINT, "fields": []}],
    ],
)
def test_a_malformed_schema_is_a_schema_error(bad: Any) -> None:
    with pytest.raises(SchemaError, match="reader schema"):
        check_can_read(bad, "int")


def test_a_named_type_written_out_twice_identically_is_tolerated() -> None:
    twice = record("x.Line", field("start", POINT), field("end", POINT))
    assert (
        check_can_read(twice, record("x.Line", field("start", POINT), field("end", "x.Point")))
        == []
    )
