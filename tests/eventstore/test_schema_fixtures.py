"""Events stored by every released schema version still decode with the current codec.

``tests/fixtures/schemas/vN/events.jsonl`` holds events written by version N (see
``tests/fixtures/schemas/make_fixtures.py``), each with the event it decoded to when it was
written. The current codec must decode each to the same values; a field the current schema
added since must hold its schema default, and a field it dropped is no longer compared.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eventstore import Codec, shipped_schemas
from eventstore.codec import HEADER_SIZE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schemas"
FILES = sorted(FIXTURES.glob("v*/events.jsonl"), key=lambda p: int(p.parent.name[1:]))
CODEC = Codec()
SCHEMAS = shipped_schemas()
HISTORY = {v.version: v for v in SCHEMAS.history}

Named = Mapping[str, Any]


def _version(path: Path) -> int:
    return int(path.parent.name[1:])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


LINES = [(_version(path), line) for path in FILES for line in _lines(path)]
CASES = [pytest.param(v, line, id=f"v{v}-{line['type']}") for v, line in LINES]


# --- plain JSON view of a decoded event (the same view the fixtures store) ---------------


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# --- comparing against the current reader schema -----------------------------------------


def _named_types(schema: Any, table: dict[str, Any] | None = None) -> dict[str, Any]:
    """Named types of an expanded schema (defined at first use), by full name."""
    table = {} if table is None else table
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, table)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            table.setdefault(schema["name"], schema)
            for field in schema.get("fields", ()):
                _named_types(field["type"], table)
        elif kind == "array":
            _named_types(schema["items"], table)
        elif kind == "map":
            _named_types(schema["values"], table)
        elif isinstance(kind, (dict, list)):
            _named_types(kind, table)
    return table


def _resolve(schema: Any, named: Named) -> Any:
    while True:
        if isinstance(schema, str) and schema in named:
            schema = named[schema]
        elif isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
            schema = schema["type"]
        elif isinstance(schema, dict) and schema.get("type") in named:
            schema = named[schema["type"]]
        else:
            return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    return str(schema if isinstance(schema, str) else schema["type"])


def _default(value: Any, schema: Any, named: Named) -> Any:
    """An Avro JSON default of ``schema`` in the plain view the decoded event has."""
    schema = _resolve(schema, named)
    kind = _kind(schema)
    if kind == "union":
        return _default(value, schema[0], named)
    if kind in ("record", "error"):
        return {
            f["name"]: _default(
                value[f["name"]] if f["name"] in value else f["default"], f["type"], named
            )
            for f in schema["fields"]
        }
    if kind == "array":
        return [_default(v, schema["items"], named) for v in value]
    if kind == "map":
        return {k: _default(v, schema["values"], named) for k, v in value.items()}
    if kind in ("bytes", "fixed"):
        return value.encode("latin-1").hex()
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical in ("timestamp-millis", "timestamp-micros"):
        unit = {"timestamp-millis": "milliseconds", "timestamp-micros": "microseconds"}[logical]
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(**{unit: value})).isoformat()
    if kind in ("float", "double"):
        return float(value)
    return value


def check_value(expected: Any, actual: Any, schema: Any, named: Named, path: str) -> None:
    """Assert that decoded ``actual`` matches fixture ``expected`` under reader ``schema``.

    Record fields in ``expected`` must be equal; fields ``expected`` lacks (added after the
    fixture's version) must hold their default; fields the reader no longer has are skipped.
    """
    schema = _resolve(schema, named)
    kind = _kind(schema)
    if kind == "union":
        if expected is None:
            assert actual is None, f"{path}: expected null, decoded {actual!r}"
            return
        failures = []
        for branch in schema:
            if _kind(_resolve(branch, named)) == "null":
                continue
            try:
                check_value(expected, actual, branch, named, path)
            except AssertionError as exc:
                failures.append(str(exc))
            else:
                return
        raise AssertionError(f"{path}: no union branch matches: {'; '.join(failures)}")
    if kind in ("record", "error"):
        assert isinstance(expected, dict), f"{path}: fixture holds {expected!r}, not a record"
        assert isinstance(actual, dict), f"{path}: decoded {actual!r}, not a record"
        for field in schema["fields"]:
            name = field["name"]
            fpath = f"{path}.{name}"
            assert name in actual, f"{fpath}: not decoded"
            if name in expected:
                check_value(expected[name], actual[name], field["type"], named, fpath)
            else:
                assert "default" in field, f"{fpath}: not in the fixture and has no default"
                default = _default(field["default"], field["type"], named)
                assert actual[name] == default, (
                    f"{fpath}: added after the fixture's version, so it must decode to its "
                    f"default {default!r}, got {actual[name]!r}"
                )
        return
    if kind == "array":
        assert isinstance(expected, list) and isinstance(actual, list), path
        assert len(actual) == len(expected), (
            f"{path}: {len(actual)} items, expected {len(expected)}"
        )
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            check_value(e, a, schema["items"], named, f"{path}[{i}]")
        return
    if kind == "map":
        assert isinstance(expected, dict) and isinstance(actual, dict), path
        assert actual.keys() == expected.keys(), (
            f"{path}: keys {sorted(actual)}, expected {sorted(expected)}"
        )
        for key, e in expected.items():
            check_value(e, actual[key], schema["values"], named, f"{path}[{key!r}]")
        return
    assert actual == expected, f"{path}: decoded {actual!r}, fixture expects {expected!r}"


def check_event(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Check a decoded event (plain view) against a fixture's ``expected`` envelope."""
    envelope = SCHEMAS.envelope
    named = _named_types(envelope)
    # The payload union is resolved by the event type, as the codec does.
    fields = [f for f in envelope["fields"] if f["name"] != "payload"]
    check_value(expected, actual, {**envelope, "fields": fields}, named, "event")
    record = named[f"agentlog.{expected['type']}"]
    check_value(expected["payload"], actual["payload"], record, named, "event.payload")


# --- the tests ---------------------------------------------------------------------------


def test_every_released_version_has_fixtures() -> None:
    stored = {_version(path) for path in FILES}
    missing = sorted(set(HISTORY) - stored)
    assert not missing, (
        f"no stored fixtures for schema version(s) {missing}; write them with "
        f"'python tests/fixtures/schemas/make_fixtures.py N' while the current schema is vN"
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name)
def test_fixtures_cover_every_event_type_of_their_version(path: Path) -> None:
    version = _version(path)
    assert version in HISTORY, f"{path}: no released schema v{version} in schemas/history"
    union = next(f for f in HISTORY[version].schema["fields"] if f["name"] == "payload")["type"]
    types = {(b if isinstance(b, str) else b["name"]).removeprefix("agentlog.") for b in union}
    stored = [line["type"] for line in _lines(path)]
    assert len(stored) == len(set(stored)), f"{path}: an event type appears twice"
    assert set(stored) == types, (
        f"{path}: missing {sorted(types - set(stored))}, unknown {sorted(set(stored) - types)}"
    )


@pytest.mark.parametrize(("version", "line"), CASES)
def test_fixture_decodes_with_the_current_codec(version: int, line: dict[str, Any]) -> None:
    data = bytes.fromhex(line["hex"])
    assert data[2:HEADER_SIZE] == HISTORY[version].fingerprint, (
        f"fixture of v{version} carries fingerprint {data[2:HEADER_SIZE].hex()}, "
        f"but v{version} is {HISTORY[version].fingerprint.hex()}"
    )
    assert CODEC.schema_version(data) == version
    decoded = CODEC.decode(data)
    assert decoded.type == line["type"] == line["expected"]["type"]
    check_event(line["expected"], _plain(decoded))


# --- the comparison helper itself ---------------------------------------------------------


def _a_case(event_type: str) -> dict[str, Any]:
    return next(line for _, line in LINES if line["type"] == event_type)


def test_helper_takes_defaults_for_fields_a_fixture_does_not_know() -> None:
    line = _a_case("memory.Set")
    actual = _plain(CODEC.decode(bytes.fromhex(line["hex"])))
    older = copy.deepcopy(line["expected"])
    # as if written before these fields existed: they decode to their defaults
    assert actual["payload"]["kind"] == "value" and actual["correlation_id"] is None
    del older["payload"]["kind"], older["correlation_id"]
    check_event(older, actual)
    # a field dropped from the current schema is not compared
    older["payload"]["dropped_field"] = 1
    check_event(older, actual)


def test_helper_rejects_a_value_that_is_not_its_default() -> None:
    line = _a_case("memory.Set")
    actual = _plain(CODEC.decode(bytes.fromhex(line["hex"])))
    older = copy.deepcopy(line["expected"])
    del older["payload"]["kind"]
    actual["payload"]["kind"] = "counter"
    with pytest.raises(AssertionError, match=r"event\.payload\.kind: added after"):
        check_event(older, actual)


def test_helper_rejects_a_changed_nested_value() -> None:
    line = _a_case("a2a.Artifact")
    actual = _plain(CODEC.decode(bytes.fromhex(line["hex"])))
    changed = copy.deepcopy(line["expected"])
    changed["payload"]["parts"][2]["file"]["bytes"] = "00"
    with pytest.raises(AssertionError, match=r"event\.payload\.parts\[2\]\.file\.bytes"):
        check_event(changed, actual)


def test_default_conversion_matches_the_decoded_view() -> None:
    named: dict[str, Any] = {}
    assert _default("\u00ff\u0000", "bytes", named) == "ff00"
    assert _default(1000, {"type": "long", "logicalType": "timestamp-millis"}, named) == (
        "1970-01-01T00:00:01+00:00"
    )
    assert _default(None, ["null", "string"], named) is None
    record = {
        "type": "record",
        "name": "x.R",
        "fields": [{"name": "a", "type": "int", "default": 1}, {"name": "b", "type": "double"}],
    }
    assert _default({"b": 2}, record, named) == {"a": 1, "b": 2.0}
