"""The Avro schemas shipped with agentlog: loading, expansion, canonical form, fingerprints.

Every named type lives in its own file ``eventstore/schemas/<full name>.avsc``. The writer
schema of an event is ``agentlog.Envelope`` with every named type written out in full at its
first use (depth first, whichever file it lives in) and referenced by full name afterwards;
this is exactly what ``fastavro.schema.load_schema("agentlog.Envelope.avsc")`` produces from
the same folder, so a consumer holding only the ``.avsc`` files computes the same Parsing
Canonical Form and the same CRC-64-AVRO fingerprint.

Released versions of the expanded envelope are frozen under ``schemas/history/vN.json``; the
codec knows all of them, so events written by any earlier version still decode.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro.schema

from eventstore.errors import SchemaError

SCHEMA_DIR = Path(__file__).parent / "schemas"
"""Folder holding the published ``.avsc`` files."""
HISTORY_DIR = SCHEMA_DIR / "history"
"""Folder holding every released, fully expanded envelope schema (``vN.json``)."""
ENVELOPE = "agentlog.Envelope"
"""Full name of the envelope record."""

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
Schema = Any  # Any: an Avro schema is a JSON tree (str | list | dict) by definition


def _crc64_table() -> tuple[int, ...]:
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    return tuple(table)


_CRC64_EMPTY = 0xC15D213AA4D7A795
_CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """Return the CRC-64-AVRO (Rabin) fingerprint of ``data``, as the Avro spec defines it."""
    fp = _CRC64_EMPTY
    table = _CRC64_TABLE
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: Schema) -> str:
    """Return the Parsing Canonical Form of an expanded schema."""
    return str(fastavro.schema.to_parsing_canonical_form(schema))


def fingerprint(schema: Schema) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of ``schema``'s canonical form.

    These are the 8 bytes that follow ``C3 01`` in Avro single-object encoding.
    """
    return crc64_avro(canonical_form(schema).encode("utf-8")).to_bytes(8, "little")


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def load_named(folder: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    """Read every ``<full name>.avsc`` in ``folder``.

    Raises:
        SchemaError: a file is not valid JSON, is not a named type, or its name does not
            match its file name.
    """
    named: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.avsc")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{path}: cannot read schema: {exc}") from exc
        if not isinstance(doc, dict) or "name" not in doc:
            raise SchemaError(f"{path}: top level must be a named type with a 'name'")
        full = _fullname(doc["name"], doc.get("namespace"))
        if path.name != f"{full}.avsc":
            raise SchemaError(f"{path}: defines {full!r}; the file must be named {full}.avsc")
        named[full] = doc
    return named


def expand(root: str, named: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Return ``root`` with each named type written out in full at its first use.

    Args:
        root: Full name of the schema to expand (``"agentlog.Envelope"``).
        named: Named schemas by full name, as :func:`load_named` returns them.

    Raises:
        SchemaError: a reference names no known type.
    """
    seen: set[str] = set()

    def walk(node: Schema, namespace: str | None) -> Schema:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            full = _fullname(node, namespace)
            if full not in named and node in named:
                full = node
            if full in seen:
                return full
            if full not in named:
                raise SchemaError(f"schema {root!r} refers to unknown type {node!r}")
            return walk(named[full], None)
        if isinstance(node, list):
            return [walk(b, namespace) for b in node]
        kind = node.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            full = _fullname(node["name"], node.get("namespace", namespace))
            seen.add(full)
            out = dict(node)
            out["name"] = full
            out.pop("namespace", None)
            if kind in ("record", "error"):
                ns = full.rpartition(".")[0] or None
                out["fields"] = [{**f, "type": walk(f["type"], ns)} for f in node["fields"]]
            return out
        if kind == "array":
            return {**node, "items": walk(node["items"], namespace)}
        if kind == "map":
            return {**node, "values": walk(node["values"], namespace)}
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            return walk(kind, namespace)
        return node

    return dict(walk(root, None))


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One released version of the envelope schema."""

    version: int
    schema: dict[str, Any]
    fingerprint: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaSet:
    """The current envelope schema, its payload records and every released version."""

    envelope: dict[str, Any]
    canonical: str
    fingerprint: bytes
    named: Mapping[str, dict[str, Any]]
    history: tuple[SchemaVersion, ...]

    def payload_schema(self, event_type: str) -> dict[str, Any]:
        """Return the self-contained (expanded) record schema of ``event_type``'s payload.

        Raises:
            KeyError: no payload record for ``event_type``.
        """
        full = f"agentlog.{event_type}"
        if full not in self.named or full not in self.payload_names():
            raise KeyError(f"unknown event type {event_type!r}")
        return expand(full, self.named)

    def payload_names(self) -> list[str]:
        """Full names of the payload records, in the order of the envelope's union."""
        field = next(f for f in self.envelope["fields"] if f["name"] == "payload")
        return [b if isinstance(b, str) else b["name"] for b in field["type"]]


def load_history(folder: Path = HISTORY_DIR) -> tuple[SchemaVersion, ...]:
    """Read every frozen ``vN.json`` in ``folder``, oldest first.

    Raises:
        SchemaError: a file is unreadable or misnamed.
    """
    versions = []
    for path in folder.glob("v*.json"):
        try:
            number = int(path.stem[1:])
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{path}: not a frozen schema version: {exc}") from exc
        versions.append(SchemaVersion(number, schema, fingerprint(schema)))
    numbers = [v.version for v in versions]
    if len(set(numbers)) != len(numbers):
        raise SchemaError(f"{folder}: a schema version is frozen twice (files {sorted(numbers)})")
    return tuple(sorted(versions, key=lambda v: v.version))


def load_schema_set(folder: Path = SCHEMA_DIR, history_dir: Path | None = None) -> SchemaSet:
    """Load the schemas in ``folder`` (default: the ones shipped with agentlog).

    Raises:
        SchemaError: a file is unreadable or a reference is unknown.
    """
    named = load_named(folder)
    if ENVELOPE not in named:
        raise SchemaError(f"{folder}: no {ENVELOPE}.avsc")
    envelope = expand(ENVELOPE, named)
    history = load_history(history_dir if history_dir is not None else folder / "history")
    return SchemaSet(
        envelope=envelope,
        canonical=canonical_form(envelope),
        fingerprint=fingerprint(envelope),
        named=named,
        history=history,
    )


@functools.cache
def shipped_schemas() -> SchemaSet:
    """Return the schema set shipped with this agentlog (loaded once)."""
    return load_schema_set()
