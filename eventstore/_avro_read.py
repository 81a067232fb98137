"""Direct Avro binary readers for the envelope's simple fields (pure, no I/O).

The mirror of :mod:`eventstore._avro_write`: plain Python reads the envelope's strings,
longs, timestamp, map of longs and optional strings faster than a fastavro call sets itself
up; :mod:`eventstore._avro_payload` builds the payload records' readers from these. Each
reader takes the buffer and an offset and returns the value and the next offset; it raises
``IndexError`` or ``ValueError`` on bytes that end early or do not fit, and the codec then
names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from eventstore._avro_write import simple_kind

Reader = Callable[[bytes, int], tuple[Any, int]]  # Any: each reader returns its field's type
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Below this many milliseconds from the epoch (years 1843 to 2096), ``millis / 1000`` as a
#: float is within a quarter of a microsecond of the true value, so ``fromtimestamp``
#: rounds it to the exact millisecond.
_FLOAT_EXACT_MS = 4 * 10**12


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Avro ``long`` at ``pos``: (value, next offset)."""
    b = buf[pos]
    if b < 0x80:  # one byte: -64..63, most seqs, lengths and counts
        return (b >> 1) ^ -(b & 1), pos + 1
    pos += 1
    b1 = buf[pos]
    if b1 < 0x80:  # two bytes: -8192..8191, version vector counters, longer strings
        z = (b & 0x7F) | b1 << 7
        return (z >> 1) ^ -(z & 1), pos + 1
    acc = b & 0x7F
    shift = 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    return (acc >> 1) ^ -(acc & 1), pos


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    """Avro ``string`` at ``pos``: (value, next offset)."""
    b = buf[pos]
    if not b & 0x81:  # a one-byte length (under 64 bytes: ids, names)
        pos += 1
        end = pos + (b >> 1)
        if end > len(buf):
            raise IndexError("string runs past the end of the bytes")
        return buf[pos:end].decode(), end  # bytes.decode(): UTF-8, strict
    size, pos = read_long(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise IndexError("string runs past the end of the bytes")
    return buf[pos:end].decode(), end  # bytes.decode(): UTF-8, strict


def read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    """Avro ``bytes`` at ``pos``: (value, next offset)."""
    size, pos = read_long(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise IndexError("bytes run past the end of the buffer")
    return buf[pos:end], end


def read_block_count(buf: bytes, pos: int) -> tuple[int, int]:
    """The item count of an array or map block at ``pos`` (0 ends the array): a negative
    count is followed by the block's size in bytes, which is skipped."""
    count, pos = read_long(buf, pos)
    if count < 0:
        _, pos = read_long(buf, pos)
        count = -count
    return count, pos


def optional_reader(inner: Reader, union: str) -> Reader:
    """A reader of the union ``[null, T]`` whose ``T`` values ``inner`` reads; ``union``
    names it in errors."""

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        branch = buf[pos]
        if branch == 0:
            return None, pos + 1
        if branch == 2:  # branch 1, zig-zag encoded
            return inner(buf, pos + 1)
        branch, _ = read_long(buf, pos)  # writers encode branches 0 and 1 in one byte
        raise ValueError(f"union branch {branch} of {union} does not exist")

    return read


_optional_string = optional_reader(read_string, "[null, string]")


def read_six_byte_long(buf: bytes, pos: int) -> int | None:
    """The Avro ``long`` at ``pos`` if its varint takes exactly six bytes, read in one
    go; else None (read it with :func:`read_long`). Every millisecond time from 1900 to
    2039 takes six bytes."""
    end = pos + 6
    if end > len(buf):
        return None
    b0, b1, b2, b3, b4, b5 = buf[pos:end]
    if b5 >= 0x80 or not b0 & b1 & b2 & b3 & b4 & 0x80:
        return None
    z = (
        (b0 & 0x7F)
        | (b1 & 0x7F) << 7
        | (b2 & 0x7F) << 14
        | (b3 & 0x7F) << 21
        | (b4 & 0x7F) << 28
        | b5 << 35
    )
    return (z >> 1) ^ -(z & 1)


def _timestamp_millis(buf: bytes, pos: int) -> tuple[datetime, int]:
    millis = read_six_byte_long(buf, pos)
    if millis is not None:  # |millis| < 2**41 ms: well inside the exact float range below
        return datetime.fromtimestamp(millis / 1000, UTC), pos + 6
    millis, pos = read_long(buf, pos)
    if -_FLOAT_EXACT_MS < millis < _FLOAT_EXACT_MS:  # half the time of timedelta arithmetic
        return datetime.fromtimestamp(millis / 1000, UTC), pos
    return _EPOCH + timedelta(milliseconds=millis), pos


def map_reader(values: Reader) -> Reader:
    """A reader of an Avro map whose values ``values`` reads (a ``dict``)."""

    def read(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        count, pos = read_block_count(buf, pos)
        while count:
            for _ in range(count):
                key, pos = read_string(buf, pos)
                out[key], pos = values(buf, pos)
            count, pos = read_block_count(buf, pos)
        return out, pos

    return read


_blocked_map_of_longs = map_reader(read_long)


def _map_of_longs(buf: bytes, pos: int) -> tuple[dict[str, int], int]:
    """A map of longs; the usual shape (one block of fewer than 64 entries, as every
    writer of small maps produces) without the general reader's block bookkeeping."""
    b = buf[pos]
    if b == 0:
        return {}, pos + 1
    if b & 0x81:  # a negative or a multi-byte count: the general reader
        return _blocked_map_of_longs(buf, pos)
    out: dict[str, int] = {}
    pos += 1
    for _ in range(b >> 1):
        key, pos = read_string(buf, pos)
        out[key], pos = read_long(buf, pos)
    if buf[pos] == 0:
        return out, pos + 1
    more, pos = _blocked_map_of_longs(buf, pos)  # further blocks
    out.update(more)
    return out, pos


def field_reader(schema: Any) -> Reader | None:
    """A reader for a field of type ``schema``, or None if it is not a simple type."""
    kind = simple_kind(schema)
    return None if kind is None else _READERS[kind]


_READERS: dict[str, Reader] = {
    "string": read_string,
    "long": read_long,
    "optional_string": _optional_string,
    "timestamp_millis": _timestamp_millis,
    "map_of_longs": _map_of_longs,
}
