"""The ``EventLog`` contract: every backend must pass all of it unchanged."""

from __future__ import annotations

from datetime import timedelta

import anyio
import anyio.lowlevel
import pytest

from eventstore import (
    EventTooLarge,
    IdempotencyConflict,
    InvalidEvent,
    LogClosed,
    NewEvent,
    WrongExpectedVersion,
)
from eventstore._loop import DECODE_SLICE
from eventstore.payloads import MemorySet, Message, Part
from eventstore.port import EventLog
from tests.contracts.conftest import LogFactory
from tests.samples import SAMPLES, T0, event

pytestmark = pytest.mark.anyio


async def test_log_satisfies_the_port(log: EventLog) -> None:
    assert isinstance(log, EventLog)


async def test_first_append_starts_a_thread_at_seq_1(log: EventLog) -> None:
    assert await log.version("t") == 0
    result = await log.append("t", [event()])
    assert (result.first_seq, result.version, list(result.seqs)) == (1, 1, [1])
    assert not result.deduplicated
    assert await log.version("t") == 1
    (stored,) = await log.read_thread("t")
    assert (stored.seq, stored.thread_id, stored.position) == (1, "t", result.positions[0])


async def test_batch_append_gets_consecutive_seqs_and_positions(log: EventLog) -> None:
    await log.append("t", [event()])
    result = await log.append("t", [event() for _ in range(5)])
    assert list(result.seqs) == [2, 3, 4, 5, 6]
    assert list(result.positions) == sorted(result.positions)
    assert len(set(result.positions)) == 5
    assert [e.seq for e in await log.read_thread("t")] == [1, 2, 3, 4, 5, 6]


async def test_every_event_type_round_trips(log: EventLog) -> None:
    originals = [
        event(p, actor="agent-7", version_vector={"agent-7": 3, "x": 1}) for p in SAMPLES.values()
    ]
    await log.append("all-types", originals)
    stored = await log.read_thread("all-types")
    for new, got in zip(originals, stored, strict=True):
        assert got.payload == new.payload
        assert got.type == new.type
        assert (got.event_id, got.actor, got.tenant) == (new.event_id, new.actor, new.tenant)
        assert got.occurred_at == new.occurred_at
        assert dict(got.version_vector) == dict(new.version_vector)


async def test_envelope_fields_are_kept(log: EventLog) -> None:
    new = event(
        tenant="acme",
        causation_id="cause-1",
        correlation_id="corr-1",
        idempotency_key="req-9",
        occurred_at=T0,
    )
    await log.append("t", [new])
    (got,) = await log.read_thread("t")
    assert (got.tenant, got.causation_id, got.correlation_id, got.idempotency_key) == (
        "acme",
        "cause-1",
        "corr-1",
        "req-9",
    )
    assert got.occurred_at == T0


async def test_expected_version_is_checked(log: EventLog) -> None:
    await log.append("t", [event()], expected_version=0)
    await log.append("t", [event()], expected_version=1)
    with pytest.raises(WrongExpectedVersion) as info:
        await log.append("t", [event()], expected_version=1)
    assert (info.value.thread_id, info.value.expected, info.value.current) == ("t", 1, 2)
    assert "expected version 1 of thread 't', current version is 2" in str(info.value)
    with pytest.raises(WrongExpectedVersion) as info:
        await log.append("new-thread", [event()], expected_version=3)
    assert info.value.current == 0
    assert await log.version("t") == 2
    assert await log.version("new-thread") == 0


async def test_concurrent_writers_exactly_one_wins_per_version(log: EventLog) -> None:
    await log.append("t", [event()])
    outcomes: list[str] = []

    async def writer(i: int) -> None:
        try:
            await log.append("t", [event(actor=f"w{i}")], expected_version=1)
            outcomes.append("won")
        except WrongExpectedVersion as exc:
            assert exc.current == 2
            outcomes.append("lost")

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(writer, i)
    assert outcomes.count("won") == 1
    assert outcomes.count("lost") == 39
    assert [e.seq for e in await log.read_thread("t")] == [1, 2]


async def test_concurrent_unconditional_appends_are_gap_free(log: EventLog) -> None:
    async def writer(i: int) -> None:
        for _ in range(10):
            await log.append(f"t{i % 3}", [event(actor=f"w{i}")])

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(writer, i)
    for t in ("t0", "t1", "t2"):
        assert [e.seq for e in await log.read_thread(t)] == list(range(1, 41))


async def test_retried_append_returns_original_positions(log: EventLog) -> None:
    batch = [event(), event()]
    first = await log.append("t", batch, expected_version=0)
    await log.append("t", [event()])
    again = await log.append("t", batch, expected_version=0)  # stale version, but a retry
    assert again.deduplicated
    assert again.positions == first.positions
    assert again.first_seq == 1
    assert again.version == 3
    assert len(await log.read_thread("t")) == 3


async def test_concurrent_retries_of_one_append_store_it_once(log: EventLog) -> None:
    batch = [event()]
    results = []

    async def send() -> None:
        results.append(await log.append("t", batch))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(send)
    assert len({r.positions for r in results}) == 1
    assert sum(not r.deduplicated for r in results) == 1
    assert len(await log.read_thread("t")) == 1


async def test_reused_event_id_elsewhere_is_a_conflict(log: EventLog) -> None:
    e1, e2 = event(), event()
    await log.append("t", [e1])
    with pytest.raises(IdempotencyConflict) as info:
        await log.append("other", [e1])
    assert info.value.event_id == e1.event_id
    with pytest.raises(IdempotencyConflict):
        await log.append("t", [e1, e2])  # half stored before, half new
    assert len(await log.read_thread("t")) == 1
    assert await log.read_thread("other") == []


async def test_bad_appends_are_refused_with_the_field_named(log: EventLog) -> None:
    with pytest.raises(InvalidEvent, match="events"):
        await log.append("t", [])
    with pytest.raises(InvalidEvent, match="expected_version"):
        await log.append("t", [event()], expected_version=-1)
    dup = event()
    with pytest.raises(InvalidEvent, match="event_id"):
        await log.append("t", [dup, dup])
    with pytest.raises(InvalidEvent) as info:
        await log.append("t", [event(MemorySet(key=42, value_json="1"))])  # type: ignore[arg-type]
    assert (info.value.event_type, info.value.field) == ("memory.Set", "payload.key")
    with pytest.raises(InvalidEvent) as info:
        await log.append("", [event()])
    assert info.value.field == "thread_id"
    naive = NewEvent(
        payload=MemorySet(key="k", value_json="1"),
        event_id="x",
        occurred_at=T0.replace(tzinfo=None),
        actor="a",
    )
    with pytest.raises(InvalidEvent, match="occurred_at"):
        await log.append("t", [naive])
    assert await log.version("t") == 0


async def test_oversized_events_are_refused(make_log: LogFactory) -> None:
    async with make_log(max_event_bytes=4096) as log:
        fits = event(Message(message_id="m", role="user", parts=(Part(text="x" * 3000),)))
        await log.append("t", [fits])
        big = event(Message(message_id="m", role="user", parts=(Part(text="x" * 5000),)))
        with pytest.raises(EventTooLarge) as info:
            await log.append("t", [big])
        assert info.value.limit == 4096
        assert info.value.size > 5000
        assert "a2a.Message" in str(info.value)
        assert await log.version("t") == 1


async def test_default_limit_is_one_mebibyte(log: EventLog) -> None:
    await log.append(
        "t", [event(Message(message_id="m", role="user", parts=(Part(text="x" * 1_000_000),)))]
    )
    with pytest.raises(EventTooLarge):
        await log.append(
            "t", [event(Message(message_id="m", role="user", parts=(Part(text="x" * 1_100_000),)))]
        )


async def test_read_thread_ranges(log: EventLog) -> None:
    await log.append("t", [event() for _ in range(10)])
    assert [e.seq for e in await log.read_thread("t", 4)] == list(range(4, 11))
    assert [e.seq for e in await log.read_thread("t", 4, 6)] == [4, 5, 6]
    assert await log.read_thread("t", 11) == []
    assert await log.read_thread("unknown") == []


async def test_read_thread_until_returns_the_prefix_as_of_a_time(log: EventLog) -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 10, 20, 15, 30)]
    await log.append("t", [event(occurred_at=t) for t in times])
    assert [e.seq for e in await log.read_thread("t", until=T0 + timedelta(seconds=12))] == [1, 2]
    # the prefix stops at the first later event even if an earlier-stamped one follows
    assert [e.seq for e in await log.read_thread("t", until=T0 + timedelta(seconds=16))] == [1, 2]
    assert [e.seq for e in await log.read_thread("t", until=T0 + timedelta(seconds=20))] == [
        1,
        2,
        3,
        4,
    ]
    assert await log.read_thread("t", until=T0 - timedelta(seconds=1)) == []


async def test_read_all_in_position_order(log: EventLog) -> None:
    assert await log.head() == 0
    for i in range(6):
        await log.append(f"t{i % 2}", [event(), event()])
    everything = await log.read_all()
    assert len(everything) == 12
    positions = [e.position for e in everything]
    assert positions == sorted(positions)
    assert await log.head() == positions[-1]
    page = await log.read_all(from_position=positions[4], limit=3)
    assert [e.position for e in page] == positions[4:7]
    resumed = await log.read_all(from_position=page[-1].position + 1)
    assert [e.position for e in resumed] == positions[7:]


async def test_read_all_pages_longer_than_a_decode_slice(log: EventLog) -> None:
    # More events than one decode slice of the loop (DECODE_SLICE), in several appends.
    sent = [event() for _ in range(2 * DECODE_SLICE + 100)]
    for start in range(0, len(sent), 150):
        await log.append(f"t{start % 2}", sent[start : start + 150])
    everything = await log.read_all(limit=len(sent) + 10)
    assert [e.event_id for e in everything] == [e.event_id for e in sent]
    positions = [e.position for e in everything]
    page = await log.read_all(from_position=positions[10], limit=DECODE_SLICE + 1)
    assert [e.position for e in page] == positions[10 : 11 + DECODE_SLICE]
    assert [e.payload for e in page] == [e.payload for e in sent[10 : 11 + DECODE_SLICE]]


async def test_read_event_finds_an_event_by_id(log: EventLog) -> None:
    wanted = event()
    await log.append("a", [event(), event()])
    result = await log.append("b", [event(), wanted])
    found = await log.read_event(wanted.event_id)
    assert found is not None
    assert (found.thread_id, found.seq, found.position) == ("b", 2, result.positions[1])
    assert found.payload == wanted.payload
    assert await log.read_event("no-such-event") is None
    assert await log.read_event(event().event_id) is None  # a UUIDv7 never appended


async def test_threads_are_listed_in_id_order_with_versions(log: EventLog) -> None:
    for name, count in (("b", 2), ("a", 1), ("c", 3)):
        await log.append(name, [event() for _ in range(count)])
    listed = await log.threads()
    assert [(t.thread_id, t.version) for t in listed] == [("a", 1), ("b", 2), ("c", 3)]
    assert [t.thread_id for t in await log.threads(after="a", limit=1)] == ["b"]


async def test_subscribe_replays_then_tails(log: EventLog) -> None:
    first = await log.append("t", [event(), event()])
    seen = []
    replayed = anyio.Event()

    async def follow() -> None:
        async for e in log.subscribe(first.positions[1]):
            seen.append(e)
            replayed.set()
            if len(seen) == 3:
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await replayed.wait()  # the subscriber has replayed; what follows is tailing
            await log.append("u", [event()])
            await log.append("t", [event()])
    assert [(e.thread_id, e.seq) for e in seen] == [("t", 2), ("u", 1), ("t", 3)]


async def test_subscribe_can_be_cancelled(log: EventLog) -> None:
    with anyio.move_on_after(0.3) as scope:
        async for _ in log.subscribe(0):
            pass
    assert scope.cancelled_caught


async def test_an_append_cancelled_while_it_waits_can_be_retried_into_one_event(
    log: EventLog,
) -> None:
    # Cancelled after it was handed over, an append may or may not have been stored; a
    # retry with the same event ids stores it once either way.
    for delay in (0, 0.001, 0.01):
        thread = f"cancelled-{delay}"
        new = event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.append, thread, [new])
            await anyio.sleep(delay)
            tg.cancel_scope.cancel()
        result = await log.append(thread, [new])
        stored = await log.read_thread(thread)
        assert [e.event_id for e in stored] == [new.event_id]
        assert result.positions == (stored[0].position,)


async def test_closed_log_refuses_work_and_cannot_reopen(make_log: LogFactory) -> None:
    log = make_log()
    with pytest.raises(LogClosed):
        await log.append("t", [event()])  # type: ignore[attr-defined]
    async with log as opened:
        await opened.append("t", [event()])
    with pytest.raises(LogClosed, match="closed"):
        await opened.append("t", [event()])
    with pytest.raises(LogClosed):
        await opened.read_thread("t")
    with pytest.raises(LogClosed, match="cannot be reopened"):
        async with log:
            pass
    await opened.aclose()  # idempotent


async def test_appends_queued_when_closing_are_committed(make_log: LogFactory) -> None:
    results = []

    async def append_one(log: EventLog, i: int) -> None:
        results.append(await log.append(f"t{i}", [event()]))

    async with anyio.create_task_group() as tg:
        async with make_log() as log:
            for i in range(50):
                tg.start_soon(append_one, log, i)
            await anyio.lowlevel.checkpoint()  # every append is queued, none committed yet
        # the log closed with 50 appends queued: each must have been committed
    assert len(results) == 50
    assert {r.version for r in results} == {1}
