"""Direct Avro binary encoders for the envelope's simple fields (pure, no I/O).

fastavro spends a few microseconds per call just setting up; the envelope's own fields are
strings, longs, a timestamp, a map of longs and optional strings, which plain Python writes
faster, and the strings that repeat (thread, tenant, type, actor) are cached. Payload
records are written by :mod:`eventstore._avro_payload` from these pieces. A property test
checks the result byte for byte against fastavro encoding the whole envelope.

Each encoder raises ``TypeError`` or ``ValueError`` for a value that does not fit; the codec
then asks fastavro's validator to name the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

Encoder = Callable[[Any], bytes]  # Any: each encoder checks its own value's type
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_CACHE_LIMIT = 4096


#: The one-byte varints (zig-zag values 0..127: longs -64..63), built once.
_ONE_BYTE = tuple(bytes((z,)) for z in range(0x80))


def long_bytes(n: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint."""
    if not isinstance(n, int):
        raise TypeError(f"expected an int, got {n!r}")
    z = (n << 1) ^ (n >> 63)  # out-of-range values come out large and take the long way
    if z < 0x80:  # small lengths, counts, seqs
        return _ONE_BYTE[z]
    if z < 0x4000:  # string lengths up to 8191, timestamps do not fit here
        return bytes(((z & 0x7F) | 0x80, z >> 7))
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValueError(f"{n} does not fit in a 64-bit long")
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def string_bytes(value: str) -> bytes:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    data = value.encode("utf-8")
    return long_bytes(len(data)) + data


def _cached_string() -> Encoder:
    cache: dict[str, bytes] = {}

    def encode(value: str) -> bytes:
        out = cache.get(value)
        if out is None:
            out = string_bytes(value)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[value] = out
        return out

    return encode


def optional_writer(inner: Encoder) -> Encoder:
    """An encoder of the union ``[null, T]`` whose ``T`` values ``inner`` encodes."""

    def encode(value: Any) -> bytes:
        return b"\x00" if value is None else b"\x02" + inner(value)  # branch 0 or 1

    return encode


_optional_string = optional_writer(string_bytes)


def _timestamp_millis(value: datetime) -> bytes:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError(f"expected a timezone-aware datetime, got {value!r}")
    delta = value - _EPOCH
    # the same truncation fastavro applies to sub-millisecond parts
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    if _SIX_BYTES_FROM <= ms < _SIX_BYTES_TO:  # mid-1970 to 2039: six bytes, written in one go
        z = ms << 1
        return bytes(
            (
                z & 0x7F | 0x80,
                z >> 7 & 0x7F | 0x80,
                z >> 14 & 0x7F | 0x80,
                z >> 21 & 0x7F | 0x80,
                z >> 28 & 0x7F | 0x80,
                z >> 35,
            )
        )
    return long_bytes(ms)


# The non-negative longs whose varint takes exactly six bytes: zig-zag values 2**35..2**42.
_SIX_BYTES_FROM, _SIX_BYTES_TO = 1 << 34, 1 << 41


def map_writer(values: Encoder, cached_keys: bool = False) -> Encoder:
    """An encoder of an Avro map (any ``Mapping``) whose values ``values`` encodes, written
    as one block; with ``cached_keys``, the encodings of keys seen are remembered (for keys
    that repeat, such as the actors of a version vector)."""
    key_bytes = _cached_string() if cached_keys else string_bytes

    def encode(value: Mapping[str, Any]) -> bytes:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {value!r}")
        if not value:
            return b"\x00"
        parts = [long_bytes(len(value))]
        for key, item in value.items():
            parts.append(key_bytes(key))
            parts.append(values(item))
        parts.append(b"\x00")
        return b"".join(parts)

    return encode


_map_of_longs = map_writer(long_bytes)


def simple_kind(schema: Any) -> str | None:
    """Which simple Avro type ``schema`` is, for the direct readers and writers.

    Returns:
        ``"string"``, ``"long"``, ``"optional_string"`` (``["null", "string"]``),
        ``"timestamp_millis"`` or ``"map_of_longs"``; None for anything else.
    """
    if schema == "string":
        return "string"
    if schema == "long":
        return "long"
    if schema == ["null", "string"]:
        return "optional_string"
    if isinstance(schema, dict):
        if schema.get("type") == "long" and schema.get("logicalType") == "timestamp-millis":
            return "timestamp_millis"
        if schema.get("type") == "map" and schema.get("values") == "long":
            return "map_of_longs"
    return None


def field_encoder(schema: Any, cached: bool = False) -> Encoder | None:
    """An encoder for a field of type ``schema``, or None if it is not a simple type.

    Args:
        schema: The field's (expanded) Avro type.
        cached: For strings, remember encodings of values seen (for values that repeat);
            for maps, of keys seen.
    """
    kind = simple_kind(schema)
    if kind == "string" and cached:
        return _cached_string()
    if kind == "map_of_longs" and cached:
        return map_writer(long_bytes, cached_keys=True)
    return None if kind is None else _ENCODERS[kind]


_ENCODERS: dict[str, Encoder] = {
    "string": string_bytes,
    "long": long_bytes,
    "optional_string": _optional_string,
    "timestamp_millis": _timestamp_millis,
    "map_of_longs": _map_of_longs,
}
