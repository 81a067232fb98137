"""The index consumer: keeps a :class:`~eventstore.kafka._index.ThreadIndex` up to date.

One consumer without a group reads every partition of the threads topic from the index's
checkpoints and ingests what it fetches, :data:`INGEST_CHUNK` records per transaction, on
the event loop (in a worker thread only when the index is busy). Others wait on it: an
append for its events to be ingested (read-your-writes), the sequencer for the index to
hold everything a partition had when it was assigned, subscribers for new events.

A sequencer in the same process hands over the records it has just written
(:meth:`IndexFeed.ingest_produced`): the single writer of a partition knows its next
records before any fetch returns them. While what it hands over continues the index
exactly (the record batch starts at the partition's next offset), the feed ingests it
directly and the consumer is paused on that partition (it would only fetch those records
again). Anything else (a gap: another writer, a retried write that landed twice, a round
whose effect is unknown, the partition moving to another member) hands the partition back
to the consumer at the index's next offset, so nothing written is ever skipped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from aiokafka import TopicPartition

from eventstore.errors import EventStoreError, LogClosed, StorageError
from eventstore.kafka._client import KafkaOptions, StallWatch
from eventstore.kafka._index import Indexed, ThreadIndex

logger = logging.getLogger(__name__)

_MAX_RECORDS = 5000
INGEST_CHUNK = 500
"""Most records ingested in one transaction, so the loop is never held for long."""
_RECENT = 100_000


class Wakeable(Protocol):
    """What waits for an offset: an ``anyio.Event``, or an append's own waiter."""

    def set(self) -> None: ...


class IndexFeed:
    """Feeds the thread index from the threads topic; see the module docstring.

    Args:
        bootstrap: Broker addresses.
        topic: The threads topic.
        partitions: Its partition count.
        index: The index to feed.
        options: Client settings.
        client_id: Client id for the broker's logs.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        index: ThreadIndex,
        options: KafkaOptions,
        client_id: str,
    ) -> None:
        self.topic = topic
        self.index = index
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = options.consumer(bootstrap, client_id)
        self.next_offsets: dict[int, int] = {}
        self.highwaters: dict[int, int] = {}
        self.failure: EventStoreError | None = None
        #: ingest transactions so far (fetched and handed-over records alike)
        self.transactions = 0
        # event_id -> position of the last events ingested, in two generations of at
        # most _RECENT each: the older one is dropped whole when the newer one fills up
        # (dropping a dict's oldest keys one by one rescans the dead slots at its front)
        self._recent: dict[str, int] = {}
        self._older: dict[str, int] = {}
        self.recent_limit = _RECENT
        self._changed = anyio.Event()
        # per partition: a heap of (offset, ticket, event) of appends waiting for an offset
        self._offset_waiters: dict[int, list[tuple[int, int, Wakeable]]] = {}
        self._tickets = itertools.count()
        self.closed = False
        #: partitions fed by the local sequencer (paused in the consumer)
        self._local: set[int] = set()
        # records the local sequencer handed over, waiting for this turn's transaction:
        # the records, each partition's next offset after them, set once they are in
        self._pending: list[tuple[int, int, bytes]] = []
        self._pending_ends: dict[int, int] = {}
        self._pending_done: anyio.Event | None = None

    async def start(self) -> None:
        """Connect and position the consumer at the index's checkpoints."""
        self.next_offsets = await anyio.to_thread.run_sync(self.index.checkpoints)
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        for tp in self._partitions:
            offset = self.next_offsets.get(tp.partition)
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)

    async def end_offsets(self) -> dict[int, int]:
        """The broker's end offset of every partition (possibly low, see
        :meth:`wait_caught_up`)."""
        ends: dict[Any, int] = await self._consumer.end_offsets(self._partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    @property
    def consumer(self) -> Any:
        """The aiokafka consumer (the log stops it when it closes)."""
        return self._consumer

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fetch and ingest until cancelled. A failure to ingest stops the feed for good and
        is kept in :attr:`failure` (every waiter then raises it)."""
        task_status.started()
        consumer = self._consumer
        watch = StallWatch(consumer, "the index consumer")
        while self.failure is None:
            await watch.check()
            batch: dict[Any, list[Any]] = await consumer.getmany(
                timeout_ms=100, max_records=_MAX_RECORDS
            )
            records = [(tp.partition, r.offset, r.value) for tp, rs in batch.items() for r in rs]
            for start in range(0, len(records), INGEST_CHUNK):
                chunk = records[start : start + INGEST_CHUNK]
                try:
                    await self._ingest(chunk)
                except EventStoreError as exc:
                    logger.error("the thread index stopped: %s", exc)
                    self.failure = exc
                    self._notify()
                    return
                if start + INGEST_CHUNK < len(records):
                    self._notify()  # waiters on the first chunks need not wait for the rest
                    await anyio.lowlevel.checkpoint()
            for tp in self._partitions:
                hw = consumer.highwater(tp)
                if hw is not None:
                    self.highwaters[tp.partition] = hw
            self._notify()

    async def ingest_produced(self, partition: int, base: int, values: list[bytes]) -> None:
        """Ingest ``values``, just written by the local sequencer at offsets ``base``.. of
        ``partition``, if they continue the index there; else leave them to the consumer
        (see the module docstring). A failure to ingest stops the feed, as in :meth:`run`.

        The sequencer's rounds of all its partitions get their acknowledgements together;
        what they hand over within one turn of the event loop is ingested in one
        transaction (the first caller waits that turn, the others wait for it). A
        transaction's fixed cost is most of the work for a round's few records (measured:
        17 records 18-25 us each, 136 records 10-11 us each).
        """
        if self.failure is not None or self.closed:
            return
        if self._pending_ends.get(partition, self.next_offsets.get(partition, 0)) != base:
            self.hand_back(partition)
            return
        if partition not in self._local:
            self._local.add(partition)
            self._consumer.pause(self._partitions[partition])
        self._pending.extend([(partition, base + i, value) for i, value in enumerate(values)])
        self._pending_ends[partition] = base + len(values)
        done = self._pending_done
        if done is not None:  # another round's call ingests these with its own
            await done.wait()
            return
        done = self._pending_done = anyio.Event()
        ends = self._pending_ends
        try:
            await anyio.lowlevel.checkpoint()  # the other rounds of this turn add theirs
            pending = self._pending
            self._pending, self._pending_ends, self._pending_done = [], {}, None
            try:
                for start in range(0, len(pending), INGEST_CHUNK):
                    await self._ingest(pending[start : start + INGEST_CHUNK])
            except EventStoreError as exc:
                logger.error("the thread index stopped: %s", exc)
                self.failure = exc
        finally:
            if self._pending_done is done:  # cancelled before taking the records
                self._pending, self._pending_ends, self._pending_done = [], {}, None
            for p, end in ends.items():  # whatever was not ingested, the consumer fetches
                if self.next_offsets.get(p, 0) < end:
                    self.hand_back(p)
            done.set()
        self._notify()

    def hand_back(self, partition: int) -> None:
        """Let the consumer fetch ``partition`` again, from the index's next offset."""
        if partition in self._local:
            self._local.discard(partition)
            tp = self._partitions[partition]
            self._consumer.seek(tp, self.next_offsets.get(partition, 0))
            self._consumer.resume(tp)

    async def _ingest(self, chunk: list[tuple[int, int, bytes]]) -> None:
        """Ingest ``chunk`` (records in offset order per partition) and advance the
        offsets.

        On the event loop, unless that would wait for a lock (then in a worker thread):
        ingesting is Python work (reading each record's leading fields, building rows)
        around a short SQLite transaction that never syncs, and a worker thread would
        only add hand-offs of the GIL to it (measured on replay: 16-18k events/s in a
        thread, 23-27k on the loop, reads of the pages on the loop too). A chunk holds
        at most :data:`INGEST_CHUNK` records, a few milliseconds of work.
        """
        stored = self.index.try_ingest(chunk)
        if stored is None:
            stored = await anyio.to_thread.run_sync(self.index.ingest, chunk)
        self.transactions += 1
        self._remember(stored)
        offsets = self.next_offsets
        for partition, offset, _ in chunk:
            # only forward: a fetch may bring records the local sequencer handed over first
            if offset >= offsets.get(partition, 0):
                offsets[partition] = offset + 1

    def _remember(self, stored: list[Indexed]) -> None:
        """Keep the positions of recently ingested events, so appends need no query."""
        recent = self._recent
        for event in stored:
            recent[event.event_id] = event.position
        if len(recent) >= self.recent_limit:
            self._older, self._recent = recent, {}

    def recent_position(self, event_id: str) -> int | None:
        """The position of ``event_id`` if it is among the last ``recent_limit`` (at
        least) events ingested, else None (ask the index)."""
        position = self._recent.get(event_id)
        return self._older.get(event_id) if position is None else position

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
        for partition, heap in self._offset_waiters.items():
            ingested = self.next_offsets.get(partition, 0)
            while heap and (heap[0][0] < ingested or self.failure is not None or self.closed):
                heapq.heappop(heap)[2].set()

    def wake(self) -> None:
        """Wake every waiter (when the log closes): appends still waiting raise LogClosed."""
        self.closed = True
        self._notify()

    def next_change(self) -> anyio.Event:
        """An event set at the next ingest (or empty fetch): take it before reading."""
        self.check()
        return self._changed

    def check(self) -> None:
        """Raise the feed's failure, if it stopped."""
        if self.failure is not None:
            raise StorageError(f"the Kafka thread index stopped: {self.failure}")

    async def wait_ingested(self, partition: int, offset: int) -> None:
        """Wait until the record at ``offset`` of ``partition`` is in the index.

        Each waiter is woken once, when its offset is in (or the feed stopped, or the log
        closes), not at every ingest: hundreds of appends wait here at a time.
        """
        while self.next_offsets.get(partition, 0) <= offset:
            self.check()
            if self.closed:
                raise LogClosed(f"the thread index of {self.topic!r}", "closed")
            event = anyio.Event()
            self.when_ingested(partition, offset, event)
            await event.wait()

    def when_ingested(self, partition: int, offset: int, event: Wakeable) -> None:
        """Set ``event`` once the record at ``offset`` of ``partition`` is in the index (or
        the feed stopped, or the log closes): at once if it is already."""
        if self.next_offsets.get(partition, 0) > offset or self.closed or self.failure:
            event.set()
            return
        heap = self._offset_waiters.setdefault(partition, [])
        heapq.heappush(heap, (offset, next(self._tickets), event))

    async def wait_caught_up(self, partition: int, end_offset: int) -> None:
        """Wait until the index holds everything ``partition`` had when ``end_offset`` was
        read from the broker (after the caller took the partition over).

        The broker's answer for the end offset may be low (the test broker answers the
        base offset of the last batch, plus one), so once the index is there the feed also
        waits for the high watermark that the fetch of that record reported.
        """
        if self.next_offsets.get(partition, 0) < end_offset:
            self.hand_back(partition)  # records the local sequencer did not hand over
        await self.wait_ingested(partition, end_offset - 1)
        if end_offset == 0:
            return
        highwater = self.highwaters.get(partition, 0)
        await self.wait_ingested(partition, highwater - 1)
