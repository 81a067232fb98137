"""Direct Avro binary writers and readers for payload records (pure, no I/O).

The codec's hot paths encode a payload object straight to Avro bytes and read the bytes
straight back into payload objects, where the general route converts each object to plain
dicts and lists (:func:`eventstore.payloads.to_avro`), lets fastavro walk them, and builds
the objects again from fastavro's dicts. Both routes give the same bytes and the same
objects; property tests check that for every payload type.

The writers are strict: a value of a type other than the one the payload class declares
(an ``int`` where a ``str`` belongs, a list subclass, a subclass of a record class) raises
``TypeError``, ``ValueError`` or ``KeyError``, and the codec then takes the general route,
which either encodes it as before or names the field that does not fit. The readers raise
``IndexError``, ``ValueError`` or ``struct.error`` on bytes that end early or do not fit, and
the codec then names the field.

Supported Avro types: ``null``, ``boolean``, ``long`` (and ``int``), ``double``, ``string``,
``bytes``, ``long`` with ``timestamp-millis``, enums, arrays, maps, records, and unions of
``null`` with one other type; :func:`compile_record` refuses a record using anything else.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Mapping
from typing import Any

from eventstore._avro_read import (
    Reader,
    field_reader,
    map_reader,
    optional_reader,
    read_block_count,
    read_bytes,
    read_long,
    read_string,
)
from eventstore._avro_write import (
    Encoder,
    field_encoder,
    long_bytes,
    map_writer,
    optional_writer,
    string_bytes,
)
from eventstore.payloads import Record

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_DOUBLE = struct.Struct("<d")
_EMPTY = b"\x00"  # an empty array: a zero block count


class Unsupported(Exception):
    """A schema uses an Avro type the direct route does not handle."""


# --- writers -----------------------------------------------------------------------------


def _write_null(value: None) -> bytes:
    if value is not None:
        raise TypeError(f"expected None, got {value!r}")
    return b""


def _write_boolean(value: bool) -> bytes:
    if value is True:
        return b"\x01"
    if value is False:
        return b"\x00"
    raise TypeError(f"expected a bool, got {value!r}")


def _write_int(value: int) -> bytes:
    if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"expected a 32-bit int, got {value!r}")
    return long_bytes(value)


def _write_strict_long(value: int) -> bytes:
    if type(value) is not int:
        raise TypeError(f"expected an int, got {value!r}")
    return long_bytes(value)


def _write_double(value: float) -> bytes:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"expected a float, got {value!r}")
    return _DOUBLE.pack(value)


def _write_bytes(value: bytes) -> bytes:
    if type(value) is not bytes:
        raise TypeError(f"expected bytes, got {value!r}")
    return long_bytes(len(value)) + value


_PRIMITIVE_WRITERS: dict[str, Encoder] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_strict_long,
    "double": _write_double,
    "string": string_bytes,
    "bytes": _write_bytes,
}


def _enum_writer(symbols: list[str]) -> Encoder:
    table = {s: long_bytes(i) for i, s in enumerate(symbols)}

    def write(value: str) -> bytes:
        return table[value]  # KeyError for an unknown symbol (or a non-string)

    return write


def _array_writer(items: Encoder) -> Encoder:
    def write(value: Any) -> bytes:
        if type(value) is not tuple and type(value) is not list:
            raise TypeError(f"expected a tuple, got {value!r}")
        if not value:
            return _EMPTY
        return long_bytes(len(value)) + b"".join([items(v) for v in value]) + _EMPTY

    return write


def _record_writer(cls: type[Record], fields: list[tuple[str, Encoder]]) -> Encoder:
    get = operator.attrgetter(*[name for name, _ in fields])
    encoders = [enc for _, enc in fields]
    if len(fields) == 1:  # attrgetter of one name returns the value, not a tuple
        (only,) = encoders

        def write_one(value: Record) -> bytes:
            if type(value) is not cls:
                raise TypeError(f"expected a {cls.__name__}, got {value!r}")
            return only(get(value))

        return write_one

    pairs = list(zip(encoders, range(len(encoders)), strict=True))

    def write(value: Record) -> bytes:
        if type(value) is not cls:
            raise TypeError(f"expected a {cls.__name__}, got {value!r}")
        got = get(value)
        return b"".join([enc(got[i]) for enc, i in pairs])

    return write


# --- readers -----------------------------------------------------------------------------


def _read_null(buf: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _read_boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    return buf[pos] != 0, pos + 1  # as fastavro reads it: any non-zero byte is true


def _read_double(buf: bytes, pos: int) -> tuple[float, int]:
    return _DOUBLE.unpack_from(buf, pos)[0], pos + 8


def _read_bytes_copy(buf: bytes, pos: int) -> tuple[bytes, int]:
    value, pos = read_bytes(buf, pos)
    return bytes(value), pos


_PRIMITIVE_READERS: dict[str, Reader] = {
    "null": _read_null,
    "boolean": _read_boolean,
    "int": read_long,
    "long": read_long,
    "double": _read_double,
    "string": read_string,
    "bytes": _read_bytes_copy,
}


def _enum_reader(symbols: list[str]) -> Reader:
    table = tuple(symbols)

    def read(buf: bytes, pos: int) -> tuple[str, int]:
        index, pos = read_long(buf, pos)
        if not 0 <= index < len(table):
            raise ValueError(f"enum index {index} out of range ({len(table)} symbols)")
        return table[index], pos

    return read


def _array_reader(items: Reader) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[tuple[Any, ...], int]:
        if buf[pos] == 0:  # the common empty array
            return (), pos + 1
        out: list[Any] = []
        count, pos = read_block_count(buf, pos)
        while count:
            for _ in range(count):
                value, pos = items(buf, pos)
                out.append(value)
            count, pos = read_block_count(buf, pos)
        return tuple(out), pos

    return read


def _record_reader(cls: type[Record], fields: list[tuple[str, Reader]]) -> Reader:
    # Payload classes are frozen slotted dataclasses; values read already fit them, so the
    # object is filled slot by slot (as payloads.from_avro does), not through __init__.
    setters = [(getattr(cls, name).__set__, reader) for name, reader in fields]
    new = object.__new__

    def read(buf: bytes, pos: int) -> tuple[Record, int]:
        obj = new(cls)
        for set_, reader in setters:
            value, pos = reader(buf, pos)
            set_(obj, value)
        return obj, pos

    return read


# --- compiling ---------------------------------------------------------------------------


class _Compiler:
    """Walks an expanded record schema (named types in full at their first use, by name
    after), building a writer and a reader per type."""

    def __init__(self, classes: Mapping[str, type[Record]]) -> None:
        self.classes = classes
        self.named: dict[str, tuple[Encoder, Reader]] = {}

    def compile(self, schema: Any) -> tuple[Encoder, Reader]:
        if isinstance(schema, str):
            if schema in _PRIMITIVE_WRITERS:
                return _PRIMITIVE_WRITERS[schema], _PRIMITIVE_READERS[schema]
            if schema in self.named:
                return self.named[schema]
            raise Unsupported(f"type {schema!r} (not handled, or used before it is defined)")
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if kind == "record":
            return self._record(schema)
        if kind == "enum":
            pair = _enum_writer(schema["symbols"]), _enum_reader(schema["symbols"])
            self.named[schema["name"]] = pair
            return pair
        if kind == "array":
            items = self.compile(schema["items"])
            return _array_writer(items[0]), _array_reader(items[1])
        if kind == "map":
            values = self.compile(schema["values"])
            return map_writer(values[0]), map_reader(values[1])
        if "logicalType" in schema:
            encoder, reader = field_encoder(schema), field_reader(schema)
            if encoder is None or reader is None:
                raise Unsupported(f"logical type {schema['logicalType']!r}")
            return encoder, reader
        if isinstance(kind, str) and kind in _PRIMITIVE_WRITERS:
            return self.compile(kind)
        raise Unsupported(f"Avro type {kind!r}")

    def _union(self, schema: list[Any]) -> tuple[Encoder, Reader]:
        if len(schema) != 2 or schema[0] != "null":
            raise Unsupported(f"union {schema!r} (only [null, T] is read directly)")
        inner = self.compile(schema[1])
        return optional_writer(inner[0]), optional_reader(inner[1], str(schema))

    def _record(self, schema: Mapping[str, Any]) -> tuple[Encoder, Reader]:
        name = schema["name"]
        cls = self.classes.get(name)
        if cls is None:
            raise Unsupported(f"record {name!r} has no payload class")
        compiled = [(f["name"], self.compile(f["type"])) for f in schema["fields"]]
        pair = (
            _record_writer(cls, [(n, w) for n, (w, _) in compiled]),
            _record_reader(cls, [(n, r) for n, (_, r) in compiled]),
        )
        self.named[name] = pair
        return pair


PayloadWriter = Callable[[Record], bytes]
PayloadReader = Callable[[bytes, int], tuple[Record, int]]


def compile_record(
    schema: Mapping[str, Any], classes: Mapping[str, type[Record]]
) -> tuple[PayloadWriter, PayloadReader]:
    """The direct writer and reader of one expanded record schema.

    Args:
        schema: The record, every named type written out in full at its first use.
        classes: Record full name -> its Python class, for the record and those inside it.

    Raises:
        Unsupported: the record uses a type the direct route does not handle (the message
            says which), or a record without a class in ``classes``.
    """
    return _Compiler(classes).compile(dict(schema))
