"""Creating and checking the Kafka backend's topics (``eventstore/kafka/_topics.py``)."""

from __future__ import annotations

import time

import anyio
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from eventstore.errors import BrokerUnavailable, EventStoreError
from eventstore.kafka import KafkaTopology, TopicMismatch, TopicSpec, ensure_topics
from eventstore.kafka._topics import partition_of
from tests.kafka.broker import TansuBroker, create_topic, free_port

pytestmark = pytest.mark.anyio


async def partition_counts(bootstrap: str) -> dict[str, int]:
    """All topics and their partition counts, listed without naming any (no auto-creation)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = await admin.describe_topics(None)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in topics}


async def test_creates_both_topics_with_the_partition_count(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    topology = KafkaTopology.default(partitions=3, prefix=kafka_topic)

    await ensure_topics(kafka_broker.bootstrap, topology)

    counts = await partition_counts(kafka_broker.bootstrap)
    assert counts[f"{kafka_topic}.threads"] == 3
    assert counts[f"{kafka_topic}.commands"] == 3


async def test_a_second_call_is_a_no_op(
    kafka_broker: TansuBroker, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    topology = KafkaTopology.default(partitions=2, prefix=kafka_topic)
    await ensure_topics(kafka_broker.bootstrap, topology)
    before = await partition_counts(kafka_broker.bootstrap)

    with caplog.at_level("INFO", logger="eventstore.kafka._topics"):
        await ensure_topics(kafka_broker.bootstrap, topology)

    assert await partition_counts(kafka_broker.bootstrap) == before
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("created") for m in messages), messages
    assert sum("exists with 2 partitions" in m for m in messages) == 2, messages


async def test_creates_only_the_missing_topic(kafka_broker: TansuBroker, kafka_topic: str) -> None:
    topology = KafkaTopology.default(partitions=2, prefix=kafka_topic)
    await create_topic(kafka_broker.bootstrap, topology.threads.name, partitions=2)

    await ensure_topics(kafka_broker.bootstrap, topology)

    counts = await partition_counts(kafka_broker.bootstrap)
    assert counts[topology.threads.name] == counts[topology.commands.name] == 2


async def test_an_existing_topic_with_another_partition_count_is_refused(
    kafka_broker: TansuBroker, kafka_topic: str
) -> None:
    topology = KafkaTopology.default(partitions=8, prefix=kafka_topic)
    await create_topic(kafka_broker.bootstrap, topology.threads.name, partitions=4)

    with pytest.raises(TopicMismatch) as caught:
        await ensure_topics(kafka_broker.bootstrap, topology)

    error = caught.value
    assert isinstance(error, EventStoreError)
    assert (error.topic, error.expected_partitions, error.found_partitions) == (
        topology.threads.name,
        8,
        4,
    )
    assert error.retriable is False
    assert f"topic {topology.threads.name!r} has 4 partitions" in str(error)
    assert "configured for 8" in str(error)


async def test_concurrent_calls_both_succeed(
    kafka_broker: TansuBroker, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    topology = KafkaTopology.default(partitions=5, prefix=kafka_topic)

    with caplog.at_level("INFO", logger="eventstore.kafka._topics"), anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(ensure_topics, kafka_broker.bootstrap, topology)

    counts = await partition_counts(kafka_broker.bootstrap)
    assert counts[topology.threads.name] == counts[topology.commands.name] == 5
    created = [r.args[0] for r in caplog.records if r.getMessage().startswith("created")]
    assert sorted(created) == sorted(spec.name for spec in topology.topics)


async def test_an_unreachable_broker_raises_broker_unavailable() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    topology = KafkaTopology.default(prefix="unreachable")

    started = time.monotonic()
    with anyio.fail_after(10), pytest.raises(BrokerUnavailable) as caught:
        await ensure_topics(bootstrap, topology, request_timeout=2.0)

    assert time.monotonic() - started < 5
    assert caught.value.bootstrap == bootstrap
    assert bootstrap in str(caught.value)
    assert caught.value.retriable is True
    assert caught.value.__cause__ is not None


def test_default_topology_names_and_counts() -> None:
    topology = KafkaTopology.default()

    assert topology.threads == TopicSpec("agentlog.threads", 8, 1)
    assert topology.commands == TopicSpec("agentlog.commands", 8, 1)
    assert topology.topics == (topology.threads, topology.commands)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"partitions": 0}, "partitions must be at least 1, got 0"),
        ({"replication": 0}, "replication must be at least 1, got 0"),
        ({"prefix": ""}, "prefix must not be empty"),
    ],
)
def test_default_topology_validation(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        KafkaTopology.default(**kwargs)  # type: ignore[arg-type]


def test_topics_must_share_the_partition_count() -> None:
    with pytest.raises(ValueError, match="same partition count") as caught:
        KafkaTopology(TopicSpec("a.threads", 8, 1), TopicSpec("a.commands", 4, 1))

    assert "'a.threads' has 8" in str(caught.value)
    assert "'a.commands' has 4" in str(caught.value)


def test_topics_must_differ() -> None:
    with pytest.raises(ValueError, match="must differ"):
        KafkaTopology(TopicSpec("a", 2, 1), TopicSpec("a", 2, 1))


@given(st.text(min_size=1, max_size=30), st.integers(min_value=1, max_value=64))
def test_partition_of_is_kafkas_default_partitioner(thread_id: str, partitions: int) -> None:
    every = list(range(partitions))
    assert partition_of(thread_id, partitions) == DefaultPartitioner()(
        thread_id.encode(), every, every
    )
