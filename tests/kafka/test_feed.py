"""The index feed (``eventstore/kafka/_feed.py``) on its own, against a real Tansu broker:
records a local sequencer hands over, without a sequencer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from eventstore.codec import Codec
from eventstore.kafka import KafkaTopology, ensure_topics
from eventstore.kafka._feed import IndexFeed
from eventstore.kafka._index import ThreadIndex
from tests.contracts.conftest import KAFKA_TEST_OPTIONS
from tests.kafka.broker import TansuBroker
from tests.samples import event

pytestmark = pytest.mark.anyio

CODEC = Codec()


def values(thread_id: str, seqs: range) -> list[bytes]:
    return [CODEC.encode(thread_id, seq, event()) for seq in seqs]


@pytest.fixture
async def feed(kafka_broker: TansuBroker) -> AsyncIterator[IndexFeed]:
    topo = KafkaTopology.default(partitions=4, prefix=f"feed-{uuid.uuid4().hex[:10]}")
    await ensure_topics(kafka_broker.bootstrap, topo)
    index = ThreadIndex(":memory:", CODEC)
    feed = IndexFeed(
        kafka_broker.bootstrap, topo.threads.name, 4, index, KAFKA_TEST_OPTIONS, "test-feed"
    )
    await feed.start()
    try:
        yield feed
    finally:
        await feed.consumer.stop()
        index.close()


async def test_records_handed_over_in_one_turn_share_one_transaction(feed: IndexFeed) -> None:
    # Rounds of several partitions hand their records over one after another in the same
    # turn of the loop (their acknowledgements come together): one transaction for all.
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.ingest_produced, 0, 0, values("a", range(1, 4)))
        tg.start_soon(feed.ingest_produced, 1, 0, values("b", range(1, 3)))
        tg.start_soon(feed.ingest_produced, 2, 0, values("c", range(1, 2)))
    assert feed.transactions == 1
    assert feed.next_offsets == {0: 3, 1: 2, 2: 1}
    assert [e.seq for e in feed.index.read_thread("a")] == [1, 2, 3]
    assert feed.index.head() == 6
    assert {tp.partition for tp in feed.consumer.paused()} == {0, 1, 2}

    # The next turn's records continue the index: a transaction of their own.
    await feed.ingest_produced(0, 3, values("a", range(4, 5)))
    assert feed.transactions == 2
    assert feed.next_offsets[0] == 4


async def test_a_gap_hands_the_partition_back_while_others_are_ingested(
    feed: IndexFeed,
) -> None:
    await feed.ingest_produced(1, 0, values("b", range(1, 3)))
    async with anyio.create_task_group() as tg:
        # partition 1 continues at offset 2, not 5: someone else wrote in between
        tg.start_soon(feed.ingest_produced, 1, 5, values("b", range(3, 4)))
        tg.start_soon(feed.ingest_produced, 0, 0, values("a", range(1, 2)))
    assert feed.next_offsets == {0: 1, 1: 2}
    assert {tp.partition for tp in feed.consumer.paused()} == {0}  # 1 is fetched again


async def test_records_handed_over_before_a_cancel_are_left_to_the_consumer(
    feed: IndexFeed,
) -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled at the turn it waits for the others
        await feed.ingest_produced(3, 0, values("d", range(1, 3)))
    assert feed.transactions == 0
    assert feed.next_offsets.get(3, 0) == 0
    assert not feed.consumer.paused()  # handed back: the consumer fetches them
    await feed.ingest_produced(2, 0, values("c", range(1, 2)))  # nothing left pending
    assert feed.next_offsets == {2: 1} and feed.transactions == 1


async def test_recent_positions_keep_the_latest_events_and_forget_old_ones(
    feed: IndexFeed,
) -> None:
    feed.recent_limit = 4
    thread = [event() for _ in range(10)]
    records = [CODEC.encode("r", seq, e) for seq, e in enumerate(thread, start=1)]
    for offset in range(0, 10, 2):  # five ingests of two events
        await feed.ingest_produced(0, offset, records[offset : offset + 2])
    known = {i: feed.recent_position(e.event_id) for i, e in enumerate(thread)}
    # the last recent_limit events at least are known, with their index positions
    assert [known[i] for i in range(6, 10)] == [7, 8, 9, 10]
    # and never more than two generations' worth: the first ones are forgotten
    assert known[0] is None and known[1] is None
    assert feed.recent_position("no-such-event") is None
