"""The ``SnapshotStore`` contract: SQLite and PostgreSQL must pass all of it unchanged.

The tests at the end (``test_postgres_*``) cover what only the PostgreSQL adapter has: its
pool, its arguments, and how it reports an unreachable or failing server.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import anyio
import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql

from eventstore import RecordedEvent
from eventstore.payloads import (
    MemoryDelete,
    MemorySet,
    Message,
    Part,
    Payload,
    RoutingDecided,
    TaskStatusUpdate,
)
from projections import (
    MergeRules,
    PostgresSnapshotStore,
    ProjectionClosed,
    Snapshot,
    SnapshotStore,
    SnapshotStoreError,
    SnapshotStoreUnavailable,
    ThreadState,
    fold,
)
from projections.serial import SnapshotInvalid, checksum, decode, encode
from tests.contracts.snapshot_stores import pg_dsn, unopened_like

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
RULES = MergeRules()


def recorded(thread_id: str, payloads: list[Payload]) -> list[RecordedEvent]:
    """Events of ``thread_id`` at seqs 1.., a second apart from T0 (millisecond times)."""
    return [
        RecordedEvent(
            event_id=f"{thread_id}-e{seq}",
            thread_id=thread_id,
            tenant="acme",
            seq=seq,
            type=payload.TYPE,
            occurred_at=T0 + timedelta(seconds=seq, milliseconds=7),
            actor="planner" if seq % 2 else "critic",
            version_vector={},
            causation_id=None,
            correlation_id=None,
            idempotency_key=None,
            payload=payload,
            position=seq,
        )
        for seq, payload in enumerate(payloads, start=1)
    ]


def folded(thread_id: str = "t") -> ThreadState:
    """A state with a bit of everything: conversation, memory, a task, routing."""
    events = recorded(
        thread_id,
        [
            Message(message_id="m1", role="user", parts=(Part(text="plan a trip"),)),
            MemorySet(key="goal", value_json='"trip"'),
            MemorySet(key="scratch", value_json="[1, 2]", kind="list"),
            MemoryDelete(key="scratch"),
            TaskStatusUpdate(task_id="task-1", state="working"),
            RoutingDecided(
                task_id="task-1",
                candidates=(),
                choice="planner",
                choice_kind="agent",
                confidence=0.9,
                rationale="it plans",
                router="lexical",
                latency_ms=0.5,
            ),
            Message(message_id="m2", role="agent", parts=(Part(text="done", media_type=None),)),
        ],
    )
    state, used = fold(ThreadState(thread_id=thread_id), events, RULES)
    assert used == len(events)
    return state


def snap(
    thread_id: str,
    seq: int,
    *,
    high_time: datetime | None = None,
    rules: str = "r1",
    body: bytes | None = None,
    format: int = 1,
) -> Snapshot:
    """A snapshot with an arbitrary body: stores do not look inside."""
    body = body if body is not None else f"{thread_id}@{seq}/{rules}".encode()
    return Snapshot(
        thread_id=thread_id,
        seq=seq,
        high_time=high_time,
        rules_digest=rules,
        format=format,
        checksum=checksum(body),
        body=body,
    )


async def test_store_satisfies_the_port(snapshot_store: SnapshotStore) -> None:
    assert isinstance(snapshot_store, SnapshotStore)


async def test_save_then_latest_round_trips_every_field(snapshot_store: SnapshotStore) -> None:
    state = folded("t-round")
    assert state.version == 7 and state.high_time is not None
    snapshot = encode(state, RULES.digest)
    await snapshot_store.save(snapshot)
    got = await snapshot_store.latest("t-round", RULES.digest)
    assert snapshot.chunks  # the conversation and tasks travel as chunks
    assert got == dataclasses.replace(snapshot, chunks={})
    assert got.high_time is not None and got.high_time.utcoffset() == timedelta(0)
    assert await snapshot_store.load_chunks([*snapshot.chunks, "no-such-chunk"]) == dict(
        snapshot.chunks
    )
    assert decode(got, fetched=await snapshot_store.load_chunks(list(snapshot.chunks))) == state
    with pytest.raises(SnapshotInvalid, match=r"chunk .* is missing"):
        decode(got)


async def test_chunks_are_stored_once_and_shared(snapshot_store: SnapshotStore) -> None:
    state = folded("t-share")
    first = encode(state, RULES.digest)
    await snapshot_store.save(first)
    later = encode(dataclasses.replace(state, version=state.version + 1), RULES.digest)
    assert set(later.chunks) == set(first.chunks)  # same content, same names
    await snapshot_store.save(dataclasses.replace(later, chunks={}))
    got = await snapshot_store.latest("t-share", RULES.digest)
    assert got is not None and got.seq == state.version + 1
    fetched = await snapshot_store.load_chunks(list(first.chunks))
    assert decode(got, fetched=fetched).conversation == state.conversation
    assert await snapshot_store.clear("t-share") == 2
    assert await snapshot_store.load_chunks(list(first.chunks)) == dict(first.chunks)
    await snapshot_store.clear()
    assert await snapshot_store.load_chunks(list(first.chunks)) == {}


async def test_save_many_stores_a_batch_with_its_shared_chunks(
    snapshot_store: SnapshotStore,
) -> None:
    states = [folded(f"t-batch-{i}") for i in range(3)]
    snapshots = [encode(state, RULES.digest) for state in states]
    # The same key twice in one batch: the later one wins, as with two saves.
    again = dataclasses.replace(snapshots[0], body=snapshots[1].body, checksum="x")
    await snapshot_store.save_many([*snapshots, again])
    await snapshot_store.save_many([])
    for state, snapshot in zip(states[1:], snapshots[1:], strict=True):
        got = await snapshot_store.latest(state.thread_id, RULES.digest)
        assert got == dataclasses.replace(snapshot, chunks={})
        fetched = await snapshot_store.load_chunks(list(snapshot.chunks))
        assert decode(got, fetched=fetched) == state
    assert await snapshot_store.latest("t-batch-0", RULES.digest) == dataclasses.replace(
        again, chunks={}
    )


async def test_save_many_is_all_or_nothing(snapshot_store: SnapshotStore) -> None:
    good = encode(folded("t-good"), RULES.digest)
    broken = dataclasses.replace(snap("t-bad", 1), checksum=cast(str, None))  # NOT NULL
    with pytest.raises(SnapshotStoreError, match="saving 2 snapshots"):
        await snapshot_store.save_many([good, broken])
    assert await snapshot_store.latest("t-good", RULES.digest) is None
    assert await snapshot_store.load_chunks(list(good.chunks)) == {}
    await snapshot_store.save_many([good])
    assert await snapshot_store.seqs("t-good", RULES.digest) == [good.seq]


async def test_binary_bodies_survive_byte_for_byte(snapshot_store: SnapshotStore) -> None:
    body = bytes(range(256)) * 3 + b"\x00\x00"
    await snapshot_store.save(snap("t", 1, body=body))
    got = await snapshot_store.latest("t", "r1")
    assert got is not None and got.body == body and isinstance(got.body, bytes)


async def test_latest_of_an_unknown_thread_is_none(snapshot_store: SnapshotStore) -> None:
    assert await snapshot_store.latest("nobody", "r1") is None
    assert await snapshot_store.seqs("nobody", "r1") == []


async def test_latest_picks_the_newest_at_or_below_max_seq(snapshot_store: SnapshotStore) -> None:
    for seq in (20, 10, 30):
        await snapshot_store.save(snap("t", seq))

    async def newest(max_seq: int | None) -> int | None:
        got = await snapshot_store.latest("t", "r1", max_seq=max_seq)
        return None if got is None else got.seq

    assert await newest(None) == 30
    assert await newest(30) == 30
    assert await newest(29) == 20
    assert await newest(20) == 20
    assert await newest(10) == 10
    assert await newest(9) is None
    assert await newest(0) is None
    assert await newest(2**62) == 30


async def test_until_bounds_high_time_inclusively(snapshot_store: SnapshotStore) -> None:
    minute = timedelta(minutes=1)
    await snapshot_store.save(snap("t", 10, high_time=T0 + minute))
    await snapshot_store.save(snap("t", 20, high_time=T0 + 2 * minute))
    await snapshot_store.save(snap("t", 30, high_time=T0 + 3 * minute))

    async def newest(until: datetime | None, max_seq: int | None = None) -> int | None:
        got = await snapshot_store.latest("t", "r1", max_seq=max_seq, until=until)
        return None if got is None else got.seq

    assert await newest(None) == 30
    assert await newest(T0 + 2 * minute) == 20  # inclusive
    assert await newest(T0 + 2 * minute - timedelta(milliseconds=1)) == 10
    assert await newest(T0) is None
    assert await newest(T0 + 10 * minute, max_seq=25) == 20  # both bounds apply
    assert await newest(T0 + minute, max_seq=25) == 10
    # the same instant in another time zone is the same bound
    assert await newest((T0 + 2 * minute).astimezone(timezone(timedelta(hours=5)))) == 20


async def test_snapshots_without_high_time_only_match_without_until(
    snapshot_store: SnapshotStore,
) -> None:
    await snapshot_store.save(snap("t", 10, high_time=T0))
    await snapshot_store.save(snap("t", 20, high_time=None))
    got = await snapshot_store.latest("t", "r1")
    assert got is not None and got.seq == 20 and got.high_time is None
    bounded = await snapshot_store.latest("t", "r1", until=T0 + timedelta(days=365))
    assert bounded is not None and bounded.seq == 10


async def test_rules_digest_and_thread_isolate_snapshots(snapshot_store: SnapshotStore) -> None:
    await snapshot_store.save(snap("t", 10, rules="r1"))
    await snapshot_store.save(snap("t", 10, rules="r2"))
    await snapshot_store.save(snap("t", 20, rules="r2"))
    await snapshot_store.save(snap("other", 30, rules="r1"))
    one = await snapshot_store.latest("t", "r1")
    two = await snapshot_store.latest("t", "r2")
    assert one is not None and (one.seq, one.rules_digest, one.body) == (10, "r1", b"t@10/r1")
    assert two is not None and (two.seq, two.rules_digest, two.body) == (20, "r2", b"t@20/r2")
    assert await snapshot_store.latest("t", "r3") is None
    assert await snapshot_store.seqs("t", "r1") == [10]
    assert await snapshot_store.seqs("t", "r2") == [10, 20]
    assert await snapshot_store.seqs("other", "r1") == [30]


async def test_seqs_are_ascending_whatever_the_save_order(snapshot_store: SnapshotStore) -> None:
    seqs = [5, 300, 40, 1, 1000, 77, 12]
    for seq in seqs:
        await snapshot_store.save(snap("t", seq))
    assert await snapshot_store.seqs("t", "r1") == sorted(seqs)


async def test_save_replaces_the_snapshot_of_the_same_key(snapshot_store: SnapshotStore) -> None:
    await snapshot_store.save(snap("t", 10, body=b"first", high_time=T0))
    second = snap("t", 10, body=b"second", high_time=T0 + timedelta(seconds=1), format=2)
    await snapshot_store.save(second)
    assert await snapshot_store.latest("t", "r1") == second
    assert await snapshot_store.seqs("t", "r1") == [10]


async def test_checkpoints_start_at_zero_and_never_move_back(
    snapshot_store: SnapshotStore,
) -> None:
    assert await snapshot_store.checkpoint("projector") == 0
    await snapshot_store.save_checkpoint("projector", 5)
    assert await snapshot_store.checkpoint("projector") == 5
    await snapshot_store.save_checkpoint("projector", 9)
    assert await snapshot_store.checkpoint("projector") == 9
    await snapshot_store.save_checkpoint("projector", 3)
    await snapshot_store.save_checkpoint("projector", 9)
    assert await snapshot_store.checkpoint("projector") == 9
    assert await snapshot_store.checkpoint("other") == 0
    await snapshot_store.save_checkpoint("other", 2**40)
    assert await snapshot_store.checkpoint("other") == 2**40
    assert await snapshot_store.checkpoint("projector") == 9


async def test_clear_one_thread_keeps_the_rest(snapshot_store: SnapshotStore) -> None:
    for seq in (10, 20):
        await snapshot_store.save(snap("a", seq, rules="r1"))
        await snapshot_store.save(snap("a", seq, rules="r2"))
    await snapshot_store.save(snap("b", 10))
    await snapshot_store.save_checkpoint("projector", 7)
    assert await snapshot_store.clear("a") == 4
    assert await snapshot_store.seqs("a", "r1") == []
    assert await snapshot_store.seqs("a", "r2") == []
    assert await snapshot_store.seqs("b", "r1") == [10]
    assert await snapshot_store.checkpoint("projector") == 7
    assert await snapshot_store.clear("a") == 0
    assert await snapshot_store.clear("nobody") == 0


async def test_clear_all_drops_every_snapshot_and_checkpoint(
    snapshot_store: SnapshotStore,
) -> None:
    await snapshot_store.save(snap("a", 10))
    await snapshot_store.save(snap("a", 20))
    await snapshot_store.save(snap("b", 10, rules="r2"))
    await snapshot_store.save_checkpoint("projector", 7)
    await snapshot_store.save_checkpoint("other", 3)
    assert await snapshot_store.clear() == 3
    assert await snapshot_store.seqs("a", "r1") == []
    assert await snapshot_store.seqs("b", "r2") == []
    assert await snapshot_store.checkpoint("projector") == 0
    assert await snapshot_store.checkpoint("other") == 0
    assert await snapshot_store.clear() == 0
    # a cleared store keeps working
    await snapshot_store.save(snap("a", 5))
    await snapshot_store.save_checkpoint("projector", 1)
    assert await snapshot_store.seqs("a", "r1") == [5]
    assert await snapshot_store.checkpoint("projector") == 1


async def test_a_closed_store_refuses_work_and_cannot_reopen(
    snapshot_store: SnapshotStore,
) -> None:
    await snapshot_store.save(snap("t", 1))
    await snapshot_store.aclose()
    await snapshot_store.aclose()  # idempotent
    calls = [
        snapshot_store.save(snap("t", 2)),
        snapshot_store.latest("t", "r1"),
        snapshot_store.seqs("t", "r1"),
        snapshot_store.checkpoint("p"),
        snapshot_store.save_checkpoint("p", 1),
        snapshot_store.clear(),
        snapshot_store.clear("t"),
    ]
    for call in calls:
        with pytest.raises(ProjectionClosed, match="closed"):
            await call
    with pytest.raises(ProjectionClosed, match="cannot be reopened"):
        async with snapshot_store:
            pass


async def test_an_unopened_store_refuses_work(
    snapshot_store: SnapshotStore, tmp_path: Path
) -> None:
    twin = unopened_like(snapshot_store, tmp_path)
    with pytest.raises(ProjectionClosed, match="unopened"):
        await twin.latest("t", "r1")
    with pytest.raises(ProjectionClosed, match="unopened"):
        await twin.save_checkpoint("p", 1)
    await twin.aclose()  # closing a store that never opened is fine, and final
    with pytest.raises(ProjectionClosed, match="cannot be reopened"):
        async with twin:
            pass


async def test_data_outlives_the_store_that_wrote_it(
    snapshot_store: SnapshotStore, tmp_path: Path
) -> None:
    await snapshot_store.save(snap("t", 10, high_time=T0))
    await snapshot_store.save_checkpoint("projector", 42)
    await snapshot_store.aclose()
    async with unopened_like(snapshot_store, tmp_path) as again:
        assert await again.latest("t", "r1") == snap("t", 10, high_time=T0)
        assert await again.checkpoint("projector") == 42


async def test_concurrent_saves_from_many_tasks_all_land(snapshot_store: SnapshotStore) -> None:
    async def save(seq: int) -> None:
        await snapshot_store.save(snap("t", seq, high_time=T0 + timedelta(seconds=seq)))
        await snapshot_store.save(snap("t", seq, high_time=T0 + timedelta(seconds=seq)))
        await snapshot_store.save(snap("shared", 1))  # everyone writes the same key too

    async with anyio.create_task_group() as tg:
        for seq in range(1, 51):
            tg.start_soon(save, seq)
    assert await snapshot_store.seqs("t", "r1") == list(range(1, 51))
    assert await snapshot_store.seqs("shared", "r1") == [1]
    got = await snapshot_store.latest("t", "r1", until=T0 + timedelta(seconds=33))
    assert got == snap("t", 33, high_time=T0 + timedelta(seconds=33))


async def test_racing_checkpoint_saves_keep_the_highest(snapshot_store: SnapshotStore) -> None:
    positions = list(range(1, 51))
    random.Random(7).shuffle(positions)
    async with anyio.create_task_group() as tg:
        for position in positions:
            tg.start_soon(snapshot_store.save_checkpoint, "projector", position)
    assert await snapshot_store.checkpoint("projector") == 50


# --- PostgreSQL only: the pool, arguments, failures -------------------------------------


def test_postgres_pool_defaults_are_5_to_20_connections_with_30_s_idle() -> None:
    store = PostgresSnapshotStore(pg_dsn())
    assert (store.min_size, store.max_size, store.max_idle, store.timeout) == (5, 20, 30.0, 10.0)
    assert store.schema == "agentlog"


async def test_postgres_pool_opens_with_the_defaults(pg_schema: str) -> None:
    async with PostgresSnapshotStore(pg_dsn(), schema=pg_schema) as store:
        stats = store.pool.get_stats()
        assert (stats["pool_min"], stats["pool_max"]) == (5, 20)
        assert stats["pool_size"] == 5  # opening waits for min_size connections
        assert store.pool.max_idle == 30.0
        assert store.pool.timeout == 10.0


async def test_postgres_pool_honours_min_and_max_size(pg_schema: str) -> None:
    async with PostgresSnapshotStore(
        pg_dsn(), schema=pg_schema, min_size=2, max_size=3, max_idle=5.0
    ) as store:
        stats = store.pool.get_stats()
        assert (stats["pool_min"], stats["pool_max"], stats["pool_size"]) == (2, 2 + 1, 2)
        assert store.pool.max_idle == 5.0
        peak = 0

        async def save(seq: int) -> None:
            nonlocal peak
            await store.save(snap("t", seq))
            peak = max(peak, store.pool.get_stats()["pool_size"])

        async with anyio.create_task_group() as tg:
            for seq in range(1, 41):
                tg.start_soon(save, seq)
        stats = store.pool.get_stats()
        assert peak <= 3 and stats["pool_size"] <= 3
        assert stats.get("connections_num", 0) <= 3
        assert stats.get("requests_queued", 0) > 0  # 40 callers had to wait for 3
        assert await store.seqs("t", "r1") == list(range(1, 41))


async def test_postgres_unreachable_server_fails_fast_naming_the_address() -> None:
    store = PostgresSnapshotStore(
        "postgresql://agent:s3cret-pw@127.0.0.1:1/snapshots", timeout=2.0, min_size=1
    )
    with anyio.fail_after(5):
        with pytest.raises(SnapshotStoreUnavailable) as caught:
            async with store:
                pass
    error = caught.value
    assert error.retriable
    assert "127.0.0.1:1" in str(error) and "snapshots" in str(error)
    assert "PostgreSQL is unreachable" in str(error)
    assert "s3cret-pw" not in str(error) and "s3cret-pw" not in repr(store)
    assert isinstance(error.__cause__, psycopg.Error)
    with pytest.raises(ProjectionClosed, match="cannot be reopened"):
        async with store:
            pass


async def test_postgres_stores_opening_together_on_a_fresh_schema(pg_schema: str) -> None:
    stores = [
        PostgresSnapshotStore(pg_dsn(), schema=pg_schema, min_size=1, max_size=2) for _ in range(6)
    ]

    async def use(n: int, store: PostgresSnapshotStore) -> None:
        async with store:
            await store.save(snap("t", n))

    async with anyio.create_task_group() as tg:
        for n, store in enumerate(stores, start=1):
            tg.start_soon(use, n, store)
    async with PostgresSnapshotStore(pg_dsn(), schema=pg_schema, min_size=1) as store:
        assert await store.seqs("t", "r1") == [1, 2, 3, 4, 5, 6]


async def test_postgres_schema_names_are_quoted(pg_schema: str) -> None:
    odd = pg_schema[:20] + ' Odd"; DROP'
    try:
        async with PostgresSnapshotStore(pg_dsn(), schema=odd, min_size=1) as store:
            await store.save(snap("t", 1))
            assert await store.seqs("t", "r1") == [1]
    finally:
        async with await psycopg.AsyncConnection.connect(pg_dsn(), autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(odd))
            )


async def test_postgres_errors_are_translated(pg_schema: str) -> None:
    async with PostgresSnapshotStore(pg_dsn(), schema=pg_schema, min_size=1) as store:
        async with await psycopg.AsyncConnection.connect(pg_dsn(), autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP TABLE {}.snapshots").format(sql.Identifier(pg_schema)))
        with pytest.raises(SnapshotStoreError, match="saving the snapshot of 't' at seq 1") as e:
            await store.save(snap("t", 1))
        assert not e.value.retriable
        assert isinstance(e.value.__cause__, psycopg.Error)
        assert pg_schema in str(e.value)


async def test_postgres_lost_connections_are_retriable_and_replaced(pg_schema: str) -> None:
    app = f"agentlog-test-{pg_schema}"
    dsn = psycopg.conninfo.make_conninfo(pg_dsn(), application_name=app)
    async with PostgresSnapshotStore(dsn, schema=pg_schema, min_size=1, max_size=1) as store:
        await store.save(snap("t", 1))
        async with await psycopg.AsyncConnection.connect(pg_dsn(), autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (app,),
            )
            row = await cur.fetchone()
            assert row is not None and row[0] >= 1
        with pytest.raises(SnapshotStoreUnavailable) as caught:
            await store.save(snap("t", 2))
        assert caught.value.retriable
        await store.save(snap("t", 2))  # the pool replaced the dead connection
        assert await store.seqs("t", "r1") == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"dsn": ""}, "dsn"),
        ({"dsn": "host=x port"}, "dsn"),
        ({"schema": ""}, "schema"),
        ({"schema": "s" * 64}, "schema"),
        ({"min_size": -1}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"min_size": 6, "max_size": 5}, "max_size"),
        ({"max_idle": 0}, "max_idle"),
        ({"max_idle": float("inf")}, "max_idle"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
    ],
)
def test_postgres_bad_arguments_are_refused_by_name(kwargs: dict[str, object], named: str) -> None:
    args: dict[str, object] = {"dsn": pg_dsn(), **kwargs}
    with pytest.raises(ValueError, match=named):
        PostgresSnapshotStore(**args)  # type: ignore[arg-type]


def test_postgres_dsn_errors_do_not_echo_the_password() -> None:
    with pytest.raises(ValueError, match="dsn") as caught:
        PostgresSnapshotStore("host=x password=hunter2 oops")
    assert "hunter2" not in str(caught.value)
