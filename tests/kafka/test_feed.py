"""The index feed (``eventstore/kafka/_feed.py``) on its own, against a real Tansu broker:
records a local sequencer hands over, without a sequencer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from eventstore.codec import Codec
from eventstore.errors import StorageError
from eventstore.kafka import KafkaTopology, ensure_topics
from eventstore.kafka._feed import BACKLOG, IndexFeed
from eventstore.kafka._index import IndexConflict, ThreadIndex
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


async def ingested(feed: IndexFeed) -> None:
    """Run the feed's ingest loop until what was handed over is in the index."""
    async with anyio.create_task_group() as tg:
        await tg.start(feed.ingest_queued)
        while feed.backlog or any(
            feed.next_offsets.get(p, 0) < end for p, end in feed._ends.items()
        ):
            await feed.next_change().wait()
        tg.cancel_scope.cancel()


async def test_records_handed_over_together_share_one_transaction(feed: IndexFeed) -> None:
    # Rounds of several partitions hand their records over one after another (their
    # acknowledgements come together): one transaction for all.
    feed.hand_over(0, 0, values("a", range(1, 4)))
    feed.hand_over(1, 0, values("b", range(1, 3)))
    feed.hand_over(2, 0, values("c", range(1, 2)))
    assert feed.backlog == 6
    await ingested(feed)
    assert feed.transactions == 1
    assert feed.next_offsets == {0: 3, 1: 2, 2: 1}
    assert [e.seq for e in feed.index.read_thread("a")] == [1, 2, 3]
    assert feed.index.head() == 6
    assert {tp.partition for tp in feed.consumer.paused()} == {0, 1, 2}

    # Later records continue the index: a transaction of their own.
    feed.hand_over(0, 3, values("a", range(4, 5)))
    await ingested(feed)
    assert feed.transactions == 2
    assert feed.next_offsets[0] == 4


async def test_records_may_continue_what_is_still_queued(feed: IndexFeed) -> None:
    # The sequencer does not wait for the ingest: its next round continues the queue.
    feed.hand_over(0, 0, values("a", range(1, 3)))
    feed.hand_over(0, 2, values("a", range(3, 5)))
    assert feed.backlog == 4
    await ingested(feed)
    assert [e.seq for e in feed.index.read_thread("a")] == [1, 2, 3, 4]
    assert {tp.partition for tp in feed.consumer.paused()} == {0}


async def test_a_gap_hands_the_partition_back_while_others_are_ingested(
    feed: IndexFeed,
) -> None:
    feed.hand_over(1, 0, values("b", range(1, 3)))
    await ingested(feed)
    feed.hand_over(1, 5, values("b", range(3, 4)))  # not 2: someone else wrote in between
    feed.hand_over(0, 0, values("a", range(1, 2)))
    await ingested(feed)
    assert feed.next_offsets == {0: 1, 1: 2}
    assert {tp.partition for tp in feed.consumer.paused()} == {0}  # 1 is fetched again


async def test_a_gap_drops_what_is_queued_of_the_partition(feed: IndexFeed) -> None:
    feed.hand_over(1, 0, values("b", range(1, 3)))
    feed.hand_over(1, 7, values("b", range(3, 4)))  # a gap after records still queued
    assert feed.backlog == 0  # the consumer fetches them all from offset 0 instead
    assert not feed.consumer.paused()


async def test_a_failed_ingest_stops_the_feed_and_leaves_its_records_to_the_consumer(
    feed: IndexFeed,
) -> None:
    feed.hand_over(3, 0, values("d", range(1, 3)))
    await ingested(feed)
    feed.hand_over(3, 2, values("d", range(2, 3)))  # seq 2 again, another event: a conflict
    with anyio.fail_after(10):
        await feed.ingest_queued()  # returns: the feed stopped
    assert isinstance(feed.failure, IndexConflict)
    assert feed.next_offsets == {3: 2}
    assert not feed.consumer.paused()  # not ingested: the consumer has the partition again
    with pytest.raises(StorageError, match="seq 2 of thread 'd'"):
        feed.check()


async def test_the_sequencer_waits_for_room_when_the_backlog_is_full(feed: IndexFeed) -> None:
    records = values("e", range(1, BACKLOG + 2))
    feed.hand_over(0, 0, records)
    assert feed.backlog > BACKLOG
    with anyio.move_on_after(0.2) as scope:
        await feed.make_room()  # nothing ingests: it waits
    assert scope.cancelled_caught
    async with anyio.create_task_group() as tg:
        await tg.start(feed.ingest_queued)
        with anyio.fail_after(10):
            await feed.make_room()
        tg.cancel_scope.cancel()
    assert feed.backlog <= BACKLOG


async def test_recent_positions_keep_the_latest_events_and_forget_old_ones(
    feed: IndexFeed,
) -> None:
    feed.recent_limit = 4
    thread = [event() for _ in range(10)]
    records = [CODEC.encode("r", seq, e) for seq, e in enumerate(thread, start=1)]
    for offset in range(0, 10, 2):  # five ingests of two events
        feed.hand_over(0, offset, records[offset : offset + 2])
        await ingested(feed)
    known = {offset: feed.recent_position(0, offset) for offset in range(10)}
    # the last recent_limit events at least are known, with their index positions
    assert [known[i] for i in range(6, 10)] == [7, 8, 9, 10]
    # and never more than two generations' worth: the first ones are forgotten
    assert known[0] is None and known[1] is None
    assert feed.recent_position(1, 9) is None  # another partition
