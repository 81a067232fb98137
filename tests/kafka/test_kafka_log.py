"""``KafkaEventLog`` beyond the shared contract: the command path, sequencers, the index,
and faults (a broker that restarts or is down), against real Tansu brokers."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventstore import BrokerUnavailable, StorageError, WrongExpectedVersion
from eventstore.kafka import (
    AppendTimedOut,
    CatchUpStalled,
    KafkaEventLog,
    KafkaOptions,
    KafkaTopology,
    RetryPolicy,
)
from eventstore.kafka._topics import partition_of
from eventstore.kafka._wire import (
    BATCH,
    KIND,
    KIND_APPEND,
    KIND_OUTCOME,
    REPLY_TO,
    AppendCommand,
    AppendOutcome,
    command_batch,
    decode_commands,
    decode_outcomes,
    encode_command,
    header,
)
from eventstore.payloads import MemorySet
from tests.contracts.conftest import KAFKA_TEST_OPTIONS
from tests.kafka.broker import TansuBroker
from tests.kafka.holding import held_by_another_thread
from tests.samples import event

pytestmark = pytest.mark.anyio


def topology() -> KafkaTopology:
    return KafkaTopology.default(partitions=4, prefix=f"klog-{uuid.uuid4().hex[:10]}")


def make(
    broker: TansuBroker, topo: KafkaTopology, index: Path | str = ":memory:", **kw: Any
) -> KafkaEventLog:
    kw.setdefault("options", KAFKA_TEST_OPTIONS)
    kw.setdefault("outcome_timeout", 20.0)
    return KafkaEventLog(broker.bootstrap, index, topology=topo, **kw)


async def outcomes_on(broker: TansuBroker, topic: str, partitions: int) -> list[Any]:
    """Every outcome record on the commands topic, decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                found += [
                    outcome
                    for r in records
                    if header(r.headers, KIND) == KIND_OUTCOME
                    for outcome in decode_outcomes(r.value)
                ]
            if not batch and found:
                break
        return found
    finally:
        await consumer.stop()


async def produce_raw(broker: TansuBroker, topic: str, value: bytes, **send: Any) -> Any:
    """Produce one record as a client that is not ours would; return its metadata."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value, **send)
    finally:
        await producer.stop()


async def send_raw_command(
    broker: TansuBroker,
    topo: KafkaTopology,
    command: AppendCommand,
    partition: int,
    headers: list[tuple[str, bytes]],
) -> None:
    """Put ``command`` on the commands topic as a foreign client would (no log of ours)."""
    value = command_batch(command.reply_to, [encode_command(command)])
    await produce_raw(broker, topo.commands.name, value, partition=partition, headers=headers)


def paused(log: KafkaEventLog) -> set[int]:
    """The partitions the log's index consumer does not fetch (its sequencer feeds them)."""
    assert log._feed is not None
    return {tp.partition for tp in log._feed.consumer.paused()}


async def outcome_of(broker: TansuBroker, topic: str, command_id: str) -> Any:
    """The outcome record of ``command_id`` on the commands topic, once it is there."""
    with anyio.fail_after(20):
        while True:
            for outcome in await outcomes_on(broker, topic, 4):
                if outcome.command_id == command_id:
                    return outcome


async def test_a_stale_command_becomes_command_rejected_on_the_commands_topic(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    async with make(kafka_broker, topo) as log:
        await log.append("t", [event(), event()])
        with pytest.raises(WrongExpectedVersion) as info:
            await log.append("t", [event()], expected_version=1)
        assert info.value.current == 2
    # the accepted append's outcome went to its own log in process (its events are its
    # record); the rejection is written for the audit trail
    outcomes = await outcomes_on(kafka_broker, topo.commands.name, 4)
    assert [o.status for o in outcomes] == ["rejected"]
    rejected = outcomes[0].rejected
    assert rejected is not None and rejected.TYPE == "command.Rejected"
    assert (rejected.code, rejected.expected_version, rejected.current_version) == (
        "wrong_expected_version",
        1,
        2,
    )


async def test_a_command_in_another_partition_than_its_thread_is_rejected(
    kafka_broker: TansuBroker,
) -> None:
    """Only the owner of a thread's partition may decide it: a command that a foreign
    client put in another partition is refused, naming the right one."""
    topo = topology()
    async with make(kafka_broker, topo) as log:
        await log.append("t", [event()])
        right = partition_of("t", 4)
        command = AppendCommand("c-lost", "t", None, "raw", (log.codec.prepare("t", event()),))
        await send_raw_command(kafka_broker, topo, command, (right + 1) % 4, [(KIND, KIND_APPEND)])
        lost = await outcome_of(kafka_broker, topo.commands.name, "c-lost")
        assert lost.status == "rejected" and lost.rejected is not None
        assert lost.rejected.code == "wrong_partition"
        assert f"belongs to partition {right}" in lost.rejected.reason
        assert await log.version("t") == 1


async def test_concurrent_appends_share_command_records_up_to_the_batch_size(
    kafka_broker: TansuBroker,
) -> None:
    """Appends to one partition that wait while a command record is on its way go out
    together, in order, in records no bigger than the batch size allows."""
    topo = topology()
    options = dataclasses.replace(KAFKA_TEST_OPTIONS, max_batch_bytes=64 * 1024)
    text = "x" * 3000  # ~3 KB a command: about 20 fit in one 64 KiB record
    async with make(kafka_broker, topo, options=options) as log:
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            payload = MemorySet(key=f"k{i}", value_json=json.dumps(text))
            results[i] = await log.append(f"t{i % 3}", [event(payload)])

        async with anyio.create_task_group() as tg:
            for i in range(150):
                tg.start_soon(one, i)
        for thread in ("t0", "t1", "t2"):
            seqs = [e.seq for e in await log.read_thread(thread)]
            assert seqs == list(range(1, 51))
        assert sorted(r.first_seq for r in results.values()) == sorted(list(range(1, 51)) * 3)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topo.commands.name, p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        sizes: list[int] = []
        commands = 0
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    if header(r.headers, KIND) == KIND_APPEND:
                        sizes.append(len(r.value))
                        commands += len(decode_commands(r.value))
            if not batch and sizes:
                break
    finally:
        await consumer.stop()
    assert commands == 150
    assert len(sizes) < 150  # shared records
    assert max(sizes) <= 64 * 1024


async def test_a_log_without_a_sequencer_appends_through_another_ones(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    async with (
        make(kafka_broker, topo) as sequencing,
        make(kafka_broker, topo, sequencer=False) as client,
    ):
        result = await client.append("t", [event(actor="client")])
        assert (result.first_seq, result.version) == (1, 1)
        await sequencing.append("t", [event(actor="sequencer")], expected_version=1)
        with pytest.raises(WrongExpectedVersion):
            await client.append("t", [event()], expected_version=1)
        assert await client.catch_up() == 2
        assert [e.actor for e in await client.read_thread("t")] == ["client", "sequencer"]
        assert [e.actor for e in await sequencing.read_thread("t")] == ["client", "sequencer"]
    # the client's outcomes came back as records addressed to it: accepted with the
    # event's place, then the rejection
    outcomes = await outcomes_on(kafka_broker, topo.commands.name, 4)
    assert [o.status for o in outcomes] == ["accepted", "rejected"]
    assert (outcomes[0].offsets, outcomes[0].first_seq, outcomes[0].version) == ((0,), 1, 1)


async def test_a_finished_append_leaves_nothing_behind_until_its_timeout(
    kafka_broker: TansuBroker,
) -> None:
    # Each append's waiter (its event, outcome and wake-up) must go when the append
    # returns, not when its outcome timeout (here 20 s) would have passed: kept that long,
    # they piled up at the append rate and every full collection walked them.
    topo = topology()
    async with make(kafka_broker, topo) as log:
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(log.append, f"t{i % 4}", [event()])
        gc.collect()
        assert [o for o in gc.get_objects() if type(o).__name__ == "_Waiter"] == []
        outcomes = [o for o in gc.get_objects() if isinstance(o, AppendOutcome)]
        assert outcomes == []
        assert await log.version("t0") == 10


async def test_without_any_sequencer_an_append_times_out_with_advice(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    async with make(kafka_broker, topo, sequencer=False, outcome_timeout=1.0) as log:
        started = time.monotonic()
        with pytest.raises(AppendTimedOut) as info:
            await log.append("t", [event()])
        assert time.monotonic() - started < 5
        assert "is a sequencer of group" in str(info.value)
        assert info.value.retriable


async def test_the_index_rebuilds_from_the_topic_and_resumes_from_its_checkpoints(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    topo = topology()
    index = tmp_path / "index.db"
    async with make(kafka_broker, topo, index) as log:
        for i in range(20):
            await log.append(f"t{i % 5}", [event(), event()])
        before = await log.read_all()
    async with make(kafka_broker, topo, index) as log:  # same file: nothing ingested twice
        assert await log.read_all() == before
        await log.append("t0", [event()])
        assert await log.version("t0") == 9
    async with make(kafka_broker, topo, tmp_path / "fresh.db") as log:  # rebuilt from scratch
        assert await log.head() == 41
        for i in range(5):
            assert [e.seq for e in await log.read_thread(f"t{i}")] == list(
                range(1, 10 if i == 0 else 9)
            )


async def test_a_backlog_bigger_than_an_ingest_chunk_is_ingested_whole_and_in_order(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    from eventstore.kafka._feed import INGEST_CHUNK

    topo = topology()
    total = 3 * INGEST_CHUNK + 7
    async with make(kafka_broker, topo) as log:
        for i in range(0, total, 100):
            await log.append(f"t{i % 3}", [event() for _ in range(min(100, total - i))])
        written = []
        while page := await log.read_all(len(written) + 1, 1000):
            written += page
    # A fresh index fetches the backlog in batches of up to 5000 records and ingests them
    # INGEST_CHUNK at a time, on the loop; a subscriber reads pages meanwhile.
    async with make(kafka_broker, topo, tmp_path / "fresh.db", sequencer=False) as fresh:
        seen = []
        with anyio.fail_after(30):
            async for e in fresh.subscribe(0):
                seen.append(e)
                if len(seen) == total:
                    break
        assert [e.position for e in seen] == list(range(1, total + 1))
        assert sorted(e.event_id for e in seen) == sorted(e.event_id for e in written)
        for t in ("t0", "t1", "t2"):
            mine = [e.event_id for e in written if e.thread_id == t]
            assert [e.event_id for e in await fresh.read_thread(t)] == mine
            assert await fresh.version(t) == len(mine)


async def test_appends_and_subscribers_wait_out_a_read_holding_the_index(
    kafka_broker: TansuBroker,
) -> None:
    # While a worker thread holds the index (a long read_thread), the loop must not block
    # on it: the sequencer's lookups, the feed's ingest and subscriber pages go to worker
    # threads instead, and finish once the index is free.
    async with make(kafka_broker, topology()) as log:
        await log.append("t", [event()])
        index = log._index
        assert index is not None
        seen: list[int] = []

        async def subscriber() -> None:
            async for e in log.subscribe(0):
                seen.append(e.seq)
                if len(seen) == 3:
                    return

        async def appender() -> None:
            result = await log.append("t", [event(), event()], expected_version=1)
            assert result.version == 3

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                with held_by_another_thread(index):
                    tg.start_soon(subscriber)
                    tg.start_soon(appender)
                    await anyio.sleep(0.5)  # the loop keeps running meanwhile
                    assert seen == []  # nothing could be read or ingested yet
        assert seen == [1, 2, 3]


async def test_a_catch_up_that_gets_no_further_says_where_it_stopped(
    kafka_broker: TansuBroker,
) -> None:
    """An index that cannot take the records it fetches (here: held by another thread)
    makes a catch-up give up after ``catch_up_stall`` with the partition and offsets,
    instead of waiting forever; once it can, the same call catches up."""
    topo = topology()
    async with (
        make(kafka_broker, topo) as writer,
        make(kafka_broker, topo, sequencer=False, catch_up_stall=0.5) as reader,
    ):
        index = reader._index
        assert index is not None
        with held_by_another_thread(index):
            result = await writer.append("t-stall", [event(), event()])
            partition = partition_of("t-stall", 4)
            with anyio.fail_after(20), pytest.raises(CatchUpStalled) as info:
                await reader.catch_up()
            stalled = info.value
            assert (stalled.partition, stalled.offset) == (partition, 0)
            assert stalled.target >= 1 and stalled.retriable
            assert f"partition {partition} stayed at offset 0 for 0.5 s" in str(stalled)
        with anyio.fail_after(20):
            await reader.catch_up()
        assert [e.position for e in await reader.read_thread("t-stall")] == list(result.positions)


async def test_a_second_sequencer_takes_over_with_the_versions_intact(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    first_ready, second_joined, first_closed = anyio.Event(), anyio.Event(), anyio.Event()

    async def first_member() -> None:
        async with make(kafka_broker, topo) as first:
            for i in range(8):
                await first.append(f"t{i}", [event()])
            first_ready.set()
            await second_joined.wait()
        first_closed.set()  # its partitions move to the second sequencer

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_member)
        await first_ready.wait()
        async with make(kafka_broker, topo) as second:
            second_joined.set()
            await first_closed.wait()
            with anyio.fail_after(30):
                for i in range(8):
                    result = await second.append(f"t{i}", [event()], expected_version=1)
                    assert result.version == 2
                with pytest.raises(WrongExpectedVersion):
                    await second.append("t0", [event()], expected_version=1)


async def test_appends_fail_with_the_broker_address_when_the_broker_is_down(
    durable_kafka_broker: TansuBroker,
) -> None:
    broker = durable_kafka_broker
    options = KafkaOptions(
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        request_timeout=1.0,
        retry=RetryPolicy(attempts=3, initial_delay=0.1, backoff=2.0),
    )
    async with make(broker, topology(), options=options) as log:
        await log.append("t", [event()])
        await anyio.to_thread.run_sync(broker.kill)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as info:
            await log.append("t", [event()])
        elapsed = time.monotonic() - started
        assert broker.bootstrap in str(info.value)
        assert "failed 3 times" in str(info.value)
        assert elapsed < 15  # 3 attempts of 1 s plus 0.3 s of back-off, never a hang


@pytest.mark.parametrize("crash", [True, False], ids=["sigkill", "sigterm"])
async def test_every_acknowledged_append_survives_a_broker_restart_once(
    durable_kafka_broker: TansuBroker, tmp_path: Path, crash: bool
) -> None:
    """Appenders keep going while the durable broker restarts; a failed append is retried
    with the same event (safe: idempotent). Afterwards every acknowledged event is in the
    log once, in seq order, and a fresh index built from the topic says the same.

    Small and on one partition on purpose: the durable test broker (Tansu on moto's S3)
    slows down as records accumulate.
    """
    broker = durable_kafka_broker
    topo = KafkaTopology.default(partitions=1, prefix=f"restart-{uuid.uuid4().hex[:8]}")
    acked: set[str] = set()
    failures: list[BaseException] = []

    async def appender(n: int, log: KafkaEventLog) -> None:
        for _ in range(5):
            e = event(actor=f"w{n}")
            for _attempt in range(8):
                try:
                    await log.append(f"thread-{n}", [e])
                    acked.add(e.event_id)
                    break
                except (BrokerUnavailable, AppendTimedOut) as exc:
                    failures.append(exc)

    with anyio.fail_after(200):
        async with make(broker, topo, tmp_path / "index.db", outcome_timeout=8.0) as log:
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(appender, n, log)
                await anyio.sleep(0.3)
                await anyio.to_thread.run_sync(lambda: broker.restart(crash=crash))
            assert len(acked) == 15, failures
            ids = [e.event_id for e in await log.read_all(limit=10_000)]
            assert len(ids) == len(set(ids)) == 15  # nothing lost, nothing twice
            assert set(ids) == acked
            for n in range(3):
                assert [e.seq for e in await log.read_thread(f"thread-{n}")] == [1, 2, 3, 4, 5]
        async with make(broker, topo, tmp_path / "rebuilt.db", sequencer=False) as log:
            rebuilt = await log.read_all(limit=10_000)  # straight from the topic
            assert sorted(e.event_id for e in rebuilt) == sorted(acked)


async def test_the_local_sequencer_takes_its_own_clients_commands_without_decoding(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    async with make(kafka_broker, topo) as log:
        sequencer = log._sequencer
        assert sequencer is not None
        results: dict[str, Any] = {}

        async def append(thread_id: str) -> None:
            results[thread_id] = await log.append(thread_id, [event(), event()])

        async with anyio.create_task_group() as tg:
            for i in range(24):
                tg.start_soon(append, f"t{i}")
        assert all(r.first_seq == 1 and r.version == 2 for r in results.values())
        assert sequencer.handed_over > 0
        assert not log._held_batches  # every record it held was taken
        # The sequencer also handed its written records to the index, so the consumer
        # does not fetch them again: it is paused on those partitions.
        assert paused(log) == {partition_of(t, 4) for t in results}
        assert sorted(e.position for e in await log.read_all()) == sorted(
            p for r in results.values() for p in r.positions
        )
        # A record that claims to come from this log but whose batch number it does not
        # hold (a retried send, or one put aside when the bound was reached) is decoded.
        command = AppendCommand("c-unheld", "t0", 2, "raw", (log.codec.prepare("t0", event()),))
        headers = [(KIND, KIND_APPEND), (REPLY_TO, log.client_id.encode()), (BATCH, b"none")]
        await send_raw_command(kafka_broker, topo, command, partition_of("t0", 4), headers)
        unheld = await outcome_of(kafka_broker, topo.commands.name, "c-unheld")
        assert unheld.status == "accepted" and unheld.first_seq == 3
        await log.catch_up()
        assert await log.version("t0") == 3
        handed = sequencer.handed_over
        await log.append("t0", [event()], expected_version=3)
        assert sequencer.handed_over == handed + 1


async def test_the_rounds_of_one_fetch_share_one_index_lookup(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    threads = [
        next(f"s{i}" for i in range(1000) if partition_of(f"s{i}", 4) == p) for p in range(4)
    ]
    async with make(kafka_broker, topo) as log:
        sequencer = log._sequencer
        assert sequencer is not None
        for thread in threads:  # every partition has had its first round
            await log.append(thread, [event()])
        rounds, lookups = sequencer.rounds, sequencer.lookups
        results = []
        async with anyio.create_task_group() as tg:
            async with sequencer.idle():  # the commands of all four partitions pile up

                async def append(thread: str) -> None:
                    results.append(await log.append(thread, [event()], expected_version=1))

                for thread in threads:
                    tg.start_soon(append, thread)
                await anyio.sleep(1)
        assert sorted(r.version for r in results) == [2, 2, 2, 2]
        assert sequencer.rounds - rounds >= 4
        # The commands piled up, so a fetch held several partitions' rounds, and those
        # shared one lookup: fewer lookups than rounds. (Usually two lookups: one for the
        # fetch that returned before the pause, one for the rest; on a loaded machine a
        # command can come in a fetch of its own.)
        assert sequencer.lookups - lookups < sequencer.rounds - rounds
        assert [await log.version(t) for t in threads] == [2, 2, 2, 2]


async def write_foreign_event(
    broker: TansuBroker, topic: str, log: KafkaEventLog, thread: str
) -> int:
    """Write seq 1 of ``thread`` straight to the threads topic, as a writer that is not the
    partition's sequencer would (a zombie); return its offset."""
    value = log.codec.encode(thread, 1, event())
    meta = await produce_raw(
        broker, topic, value, key=thread.encode(), partition=partition_of(thread, 4)
    )
    return int(meta.offset)


def same_partition(thread: str, prefix: str) -> str:
    """A thread id starting with ``prefix`` in the same partition as ``thread``."""
    return next(
        f"{prefix}{i}"
        for i in range(1000)
        if partition_of(f"{prefix}{i}", 4) == partition_of(thread, 4)
    )


async def test_a_foreign_write_in_an_owned_partition_hands_it_back_to_the_consumer(
    kafka_broker: TansuBroker,
) -> None:
    topo = topology()
    async with make(kafka_broker, topo) as log:
        await log.append("a", [event()])
        p = partition_of("a", 4)
        assert p in paused(log)
        # Another writer in the partition while the local sequencer owns it: the next
        # round no longer continues the index there, and the consumer takes over.
        zombie = same_partition("a", "z")
        await write_foreign_event(kafka_broker, topo.threads.name, log, zombie)
        second = await log.append("a", [event()], expected_version=1)
        assert second.first_seq == 2
        assert [e.seq for e in await log.read_thread(zombie)] == [1]
        assert [e.seq for e in await log.read_thread("a")] == [1, 2]
        # Contiguous again from here: the sequencer feeds the partition once more.
        await log.append("a", [event()], expected_version=2)
        assert p in paused(log)
        # A foreign write and no round after it: catching up must not wait forever.
        other = same_partition("a", "y")
        await write_foreign_event(kafka_broker, topo.threads.name, log, other)
        with anyio.fail_after(20):
            await log.catch_up()
        assert [e.seq for e in await log.read_thread(other)] == [1]
        assert await log.head() == 5


async def test_a_partition_given_up_to_another_member_is_fetched_again(
    kafka_broker: TansuBroker,
) -> None:
    """The first member fed its index itself while it owned every partition; once a second
    member takes some over, it must fetch what the second one writes there."""
    topo = topology()
    async with make(kafka_broker, topo) as first:
        for i in range(8):
            await first.append(f"t{i}", [event()])
        first_sequencer = first._sequencer
        assert first_sequencer is not None and len(first_sequencer.owned) == 4
        async with make(kafka_broker, topo) as second:
            second_sequencer = second._sequencer
            assert second_sequencer is not None
            with anyio.fail_after(30):
                await second_sequencer.joined.wait()  # opening waits for it, at most so long
            moved = set(second_sequencer.owned)
            assert moved and not moved & set(first_sequencer.owned)
            thread = next(f"t{i}" for i in range(8) if partition_of(f"t{i}", 4) in moved)
            await second.append(thread, [event()], expected_version=1)
            seen: list[Any] = []
            with anyio.fail_after(20):
                async for e in first.subscribe(0):
                    if e.thread_id == thread and e.seq == 2:
                        seen.append(e)
                        break
            assert seen and await first.version(thread) == 2


def listener_paused(log: KafkaEventLog) -> set[int]:
    """The commands-topic partitions the log's outcome listener does not fetch."""
    return {tp.partition for tp in log._outcomes.paused()}


async def listener_pauses(log: KafkaEventLog, partitions: set[int]) -> None:
    """Wait (at most 10 s) until the listener fetches all but ``partitions``: it pauses
    between its fetches, and nothing signals that."""
    with anyio.fail_after(10):
        for _ in itertools.count():
            if listener_paused(log) == partitions:
                return
            await anyio.sleep(0.05)


async def test_the_outcome_listener_skips_what_its_own_sequencer_decides_until_it_moves(
    kafka_broker: TansuBroker,
) -> None:
    """Outcomes of the partitions the local sequencer decides are handed over in process,
    so the listener stops fetching them (every command record, only to skip it); once a
    partition moves to another member, its outcomes come over the topic again."""
    topo = topology()
    async with make(kafka_broker, topo) as first:
        for i in range(8):
            await first.append(f"t{i}", [event()])
        await listener_pauses(first, {0, 1, 2, 3})
        async with make(kafka_broker, topo) as second:
            second_sequencer = second._sequencer
            assert second_sequencer is not None
            with anyio.fail_after(30):
                await second_sequencer.joined.wait()
            moved = set(second_sequencer.owned)
            assert moved
            # a rebalance revokes every partition; the first listens on those it keeps
            # until its sequencer decides there again
            for i in range(8):
                if partition_of(f"t{i}", 4) not in moved:
                    await first.append(f"t{i}", [event()], expected_version=1)
            await listener_pauses(first, {0, 1, 2, 3} - moved)
            thread = next(f"t{i}" for i in range(8) if partition_of(f"t{i}", 4) in moved)
            # decided by the second member: the first hears of it only on the topic
            result = await first.append(thread, [event()], expected_version=1)
            assert result.version == 2 and result.positions
            with pytest.raises(WrongExpectedVersion) as stale:
                await first.append(thread, [event()], expected_version=1)
            assert stale.value.current == 2


async def test_a_file_index_is_written_by_a_child_process_and_its_death_is_reported(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    topo = topology()
    async with make(kafka_broker, topo, tmp_path / "index.db") as log:
        assert log._writer is not None and log._writer.pid not in (None, os.getpid())
        first = await log.append("w-1", [event()])
        assert [e.position for e in await log.read_thread("w-1")] == list(first.positions)
        os.kill(log._writer.pid, signal.SIGKILL)
        # the next ingest finds the writer gone: the append fails and says why, at once
        with anyio.fail_after(10), pytest.raises(StorageError, match=r"index writer .* exited"):
            await log.append("w-1", [event()])
        with pytest.raises(StorageError, match="index writer"):
            await log.read_thread("w-1")
    # what was acknowledged is in the topic: a new log (and writer) indexes it again
    async with make(kafka_broker, topo, tmp_path / "index.db") as again:
        assert len(await again.read_thread("w-1")) == 2
