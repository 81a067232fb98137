"""The direct readers and writers of the envelope's simple Avro types."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore._avro_read import field_reader, read_long, read_six_byte_long
from eventstore._avro_write import field_encoder, long_bytes

TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
MAP = {"type": "map", "values": "long"}
LONGS = st.integers(-(2**63), 2**63 - 1)
#: near the epoch (the reader's float path) and over the whole of years 1..9999
MILLIS = st.integers(-(10**12), 4 * 10**12) | st.integers(-62135596800000, 253402300799999)
TIMES = MILLIS.map(lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    ("string", st.text()),
    ("long", LONGS),
    (["null", "string"], st.none() | st.text()),
    (TIMESTAMP, TIMES),
    (MAP, st.dictionaries(st.text(max_size=8), LONGS, max_size=5)),
]


def _fastavro(schema: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    return buf.getvalue()


@pytest.mark.parametrize(("schema", "values"), CASES, ids=lambda c: str(c)[:20])
def test_writer_matches_fastavro_and_reader_reads_it_back(
    schema: Any, values: st.SearchStrategy[Any]
) -> None:
    encode = field_encoder(schema)
    read = field_reader(schema)
    assert encode is not None and read is not None

    @given(values)
    def check(value: Any) -> None:
        data = encode(value)
        assert data == _fastavro(schema, value)
        assert read(data + b"tail", 0) == (value, len(data))
        assert read(b"\x07" + data, 1) == (value, len(data) + 1)  # at the end of the bytes

    check()


@given(LONGS)
@example(1_764_687_600_000)  # a time in 2025: six bytes
@example(-1_764_687_600_000)
@example(2**41)  # seven bytes
def test_six_byte_longs_are_read_in_one_go_and_others_left_to_read_long(value: int) -> None:
    data = long_bytes(value) + b"\x00"
    got = read_six_byte_long(data, 0)
    if len(data) == 7:
        assert got == value == read_long(data, 0)[0]
    else:
        assert got is None
    assert read_six_byte_long(long_bytes(value)[:5], 0) is None  # too short to hold one


def test_cached_strings_encode_the_same_and_stay_bounded() -> None:
    encode = field_encoder("string", cached=True)
    assert encode is not None
    for i in range(5000):
        assert encode(f"thread-{i}") == _fastavro("string", f"thread-{i}")
    assert encode("thread-1") == _fastavro("string", "thread-1")


def test_maps_with_cached_keys_encode_the_same() -> None:
    encode = field_encoder(MAP, cached=True)
    plain = field_encoder(MAP)
    assert encode is not None and plain is not None and encode is not plain
    for i in range(5000):
        value = {"planner": i, f"agent-{i % 7}": -i, f"actor-{i}": 2**40}
        assert encode(value) == plain(value) == _fastavro(MAP, value)
    assert encode({}) == b"\x00"


def test_maps_of_several_blocks_are_read() -> None:
    one = _fastavro("string", "a") + long_bytes(1)
    two = _fastavro("string", "b") + long_bytes(2) + _fastavro("string", "a") + long_bytes(3)
    read = field_reader(MAP)
    assert read is not None
    # a one-byte count, then a further block (whose repeated key wins, as in fastavro)
    data = long_bytes(1) + one + long_bytes(2) + two + b"\x00"
    assert read(data, 0) == ({"a": 3, "b": 2}, len(data))
    assert fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(MAP), None) == {
        "a": 3,
        "b": 2,
    }
    # a count of 64 entries takes two bytes
    big = {f"k{i}": i for i in range(64)}
    assert read(_fastavro(MAP, big), 0) == (big, len(_fastavro(MAP, big)))


def test_map_blocks_with_byte_sizes_are_read() -> None:
    # Writers may give a block's count negated, followed by its size in bytes.
    entries = _fastavro("string", "a") + long_bytes(5)
    data = long_bytes(-1) + long_bytes(len(entries)) + entries + b"\x00"
    read = field_reader(MAP)
    assert read is not None
    assert read(data, 0) == ({"a": 5}, len(data))


@pytest.mark.parametrize(
    ("schema", "value", "error"),
    [
        ("string", 3, TypeError),
        ("long", "3", TypeError),
        ("long", 2**63, ValueError),
        (TIMESTAMP, datetime(2026, 1, 1), TypeError),  # naive
        (MAP, [("a", 1)], TypeError),
        (MAP, {"a": "1"}, TypeError),
    ],
)
def test_writers_refuse_values_that_do_not_fit(
    schema: Any, value: Any, error: type[Exception]
) -> None:
    encode = field_encoder(schema)
    assert encode is not None
    with pytest.raises(error):
        encode(value)


@pytest.mark.parametrize("ms", [4 * 10**12 - 1, 4 * 10**12, -(4 * 10**12) + 1, -(4 * 10**12), 0])
def test_timestamps_at_the_edges_of_the_float_path_read_exactly(ms: int) -> None:
    read = field_reader(TIMESTAMP)
    assert read is not None
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert read(long_bytes(ms), 0) == (expected, len(long_bytes(ms)))


def test_readers_refuse_bytes_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="10 bytes"):
        read_long(b"\xff" * 11, 0)
    with pytest.raises(IndexError):
        read_long(b"\x80", 0)
    optional = field_reader(["null", "string"])
    assert optional is not None
    with pytest.raises(ValueError, match="branch 2"):
        optional(long_bytes(2), 0)
    string = field_reader("string")
    assert string is not None
    with pytest.raises(IndexError, match="past the end"):
        string(long_bytes(10) + b"abc", 0)  # a one-byte length
    with pytest.raises(IndexError, match="past the end"):
        string(long_bytes(100) + b"abc", 0)  # a longer one
    with pytest.raises(IndexError, match="past the end"):
        string(long_bytes(-1) + b"abc", 0)  # a negative one
    with pytest.raises(ValueError, match="branch 1000"):
        optional(long_bytes(1000), 0)


@pytest.mark.parametrize(
    "schema", ["int", "bytes", ["null", "long"], {"type": "array", "items": "long"}]
)
def test_other_types_have_no_direct_reader_or_writer(schema: Any) -> None:
    assert field_encoder(schema) is None
    assert field_reader(schema) is None
