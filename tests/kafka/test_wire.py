"""The records of the commands topic: append batches and outcome batches (pure, no broker)."""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore.codec import PreparedEvent
from eventstore.errors import (
    CorruptEvent,
    EventStoreError,
    IdempotencyConflict,
    WrongExpectedVersion,
)
from eventstore.kafka._wire import (
    APPEND_BATCH_SCHEMA,
    KIND,
    REPLY_TO,
    AppendCommand,
    AppendOutcome,
    batch_overhead,
    command_batch,
    decode_commands,
    decode_outcomes,
    encode_command,
    encode_outcomes,
    header,
)
from eventstore.payloads import CommandRejected

_PARSED = fastavro.parse_schema(APPEND_BATCH_SCHEMA, named_schemas={})
_PREFIX_LEN = 10  # C3 01 and the 8-byte fingerprint

prepared = st.builds(
    PreparedEvent, st.text(max_size=40), st.text(max_size=20), st.binary(), st.binary()
)
commands = st.builds(
    AppendCommand,
    st.text(max_size=40),
    st.text(max_size=40),
    st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    st.just("client-1"),
    st.lists(prepared, min_size=1, max_size=3).map(tuple),
)


def _fastavro_batch(reply_to: str, cmds: list[AppendCommand]) -> bytes:
    buf = io.BytesIO()
    datum = {
        "reply_to": reply_to,
        "commands": [
            {
                "command_id": c.command_id,
                "thread_id": c.thread_id,
                "expected_version": c.expected_version,
                "events": [
                    {"event_id": e.event_id, "type": e.type, "head": e.head, "tail": e.tail}
                    for e in c.events
                ],
            }
            for c in cmds
        ],
    }
    fastavro.schemaless_writer(buf, _PARSED, datum)
    return buf.getvalue()


@given(st.lists(commands, min_size=1, max_size=5))
def test_an_append_batch_is_the_avro_record_fastavro_writes_and_reads_back(
    cmds: list[AppendCommand],
) -> None:
    data = command_batch("client-1", [encode_command(c) for c in cmds])
    assert data[_PREFIX_LEN:] == _fastavro_batch("client-1", cmds)
    assert decode_commands(data) == cmds
    assert len(data) <= sum(map(len, map(encode_command, cmds))) + batch_overhead(
        "client-1", len(cmds)
    )


def test_arrays_written_in_several_blocks_with_byte_sizes_are_read() -> None:
    one = AppendCommand("c1", "t", 3, "me", (PreparedEvent("e1", "memory.Set", b"h", b"t"),))
    two = AppendCommand("c2", "u", None, "me", (PreparedEvent("e2", "memory.Set", b"", b""),))
    head = command_batch("me", [encode_command(one)])[: -len(encode_command(one)) - 2]
    item = encode_command(two)
    # block 1: count 1 (one), block 2: count -1 with its byte size (two), then the end
    data = head + b"\x02" + encode_command(one) + b"\x01" + bytes([len(item) * 2]) + item + b"\x00"
    assert decode_commands(data) == [one, two]


def _one() -> bytes:
    event = PreparedEvent("e1", "memory.Set", b"head", b"tail")
    return command_batch("me", [encode_command(AppendCommand("c1", "t", None, "me", (event,)))])


@pytest.mark.parametrize(
    ("data", "field", "says"),
    [
        (b"\xc3\x01" + b"\x00" * 8 + b"\x00", "(header)", "not a single-object encoded record"),
        (_one()[:-7], "commands", "IndexError"),
        (_one() + b"\x00", "(body)", "1 trailing bytes"),
        (_one()[:10] + b"\x04me\x02\x04c1\x02t\x06", "commands", "union branch 3"),
        (_one()[:10] + b"\x09", "reply_to", "IndexError"),
    ],
    ids=["foreign", "truncated", "trailing", "bad-union", "bad-string"],
)
def test_a_broken_append_batch_names_the_part_that_failed(
    data: bytes, field: str, says: str
) -> None:
    with pytest.raises(CorruptEvent) as info:
        decode_commands(data)
    assert info.value.event_type == "agentlog.kafka.AppendBatch"
    assert info.value.field == field
    assert says in str(info.value)


def test_an_empty_append_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one command"):
        command_batch("me", [])


def test_outcome_batches_round_trip_with_rejections() -> None:
    rejected = CommandRejected(
        command_id="c2",
        code="wrong_expected_version",
        reason="thread t is at version 2, not 1",
        expected_version=1,
        current_version=2,
    )
    outcomes = [
        AppendOutcome("c1", "t", "accepted", 3, (10, 11), 1, 2),
        AppendOutcome("c2", "t", "rejected", 3, version=2, rejected=rejected),
        AppendOutcome("c3", "u", "duplicate", 3, (12,), 5, 5),
    ]
    assert decode_outcomes(encode_outcomes(outcomes)) == outcomes
    with pytest.raises(CorruptEvent, match="OutcomeBatch"):
        decode_outcomes(encode_outcomes(outcomes)[:-3])


def test_an_outcome_batch_of_another_schema_or_with_trailing_bytes_is_refused() -> None:
    data = encode_outcomes([AppendOutcome("c1", "t", "accepted", 0, (1,), 1, 1)])
    with pytest.raises(CorruptEvent, match="not a single-object encoded record"):
        decode_outcomes(_one())
    with pytest.raises(CorruptEvent, match="1 trailing bytes"):
        decode_outcomes(data + b"\x00")


def test_an_event_whose_bytes_run_past_the_batch_is_named() -> None:
    event = PreparedEvent("e1", "memory.Set", b"head", b"tail")
    item = encode_command(AppendCommand("c1", "t", None, "me", (event,)))
    data = command_batch("me", [item[: item.index(b"head")] + b"he"])
    with pytest.raises(CorruptEvent, match="bytes run past the end"):
        decode_commands(data)


def _rejection(code: str) -> AppendOutcome:
    rejected = CommandRejected(
        command_id="c1", code=code, reason="why", expected_version=1, current_version=4
    )
    return AppendOutcome(
        "c1", "t", "rejected", 0, version=4, conflict_event_id="e9", rejected=rejected
    )


def test_a_rejection_becomes_the_error_append_raises() -> None:
    stale = _rejection("wrong_expected_version").error()
    assert isinstance(stale, WrongExpectedVersion)
    assert (stale.expected, stale.current) == (1, 4)
    reused = _rejection("idempotency_conflict").error()
    assert isinstance(reused, IdempotencyConflict) and reused.event_id == "e9"
    other = _rejection("wrong_partition").error()
    assert type(other) is EventStoreError and "c1 was rejected: why" in str(other)
    with pytest.raises(ValueError, match="is accepted"):
        AppendOutcome("c1", "t", "accepted", 0, (1,), 1, 1).error()


def test_header_finds_a_consumed_records_header() -> None:
    headers = ((KIND, b"append"), (REPLY_TO, bytearray(b"me")))
    assert header(headers, REPLY_TO) == b"me"
    assert header(headers, "missing") is None
    assert header(None, KIND) is None
