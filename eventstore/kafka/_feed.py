"""The index consumer: keeps a :class:`~eventstore.kafka._index.ThreadIndex` up to date.

One consumer without a group reads every partition of the threads topic from the index's
checkpoints and queues what it fetches; an ingest loop takes the queue, :data:`INGEST_CHUNK`
records per transaction, and ingests it: by the log's index writer process if it has one
(:mod:`eventstore.kafka._writer`), else on the event loop (in a worker thread only when
the index is busy). The fetch loop does not wait for the ingest (aiokafka's next fetch and
the subscribers' reads run meanwhile), but stops fetching while :data:`BACKLOG` records
are queued. Others wait on the feed: an append for its events to be ingested
(read-your-writes), the sequencer for the index to hold everything a partition had when it
was assigned, subscribers for new events.

A sequencer in the same process hands over the records it has just written
(:meth:`IndexFeed.hand_over`): the single writer of a partition knows its next records
before any fetch returns them. While what it hands over continues the index exactly (the
record batch starts at the partition's next offset, after what is queued), the feed
queues it and the consumer is paused on that partition (it would only fetch those records
again). Anything else (a gap: another writer, a retried write that landed twice, a round
whose effect is unknown, the partition moving to another member) hands the partition back
to the consumer at the index's next offset, so nothing written is ever skipped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from aiokafka import TopicPartition

from eventstore.errors import EventStoreError, LogClosed, StorageError
from eventstore.kafka._client import KafkaOptions, StallWatch
from eventstore.kafka._index import ThreadIndex
from eventstore.kafka._writer import IndexWriter, Reply, Stored

logger = logging.getLogger(__name__)

_MAX_RECORDS = 5000
INGEST_CHUNK = 500
"""Most records ingested in one transaction, so the loop is never held for long."""
WRITER_DEPTH = 2
"""Chunks handed to the index writer process before the first one's answer is read."""
BACKLOG = 4 * INGEST_CHUNK
"""Records queued for ingest beyond which the fetch loop and the sequencer wait."""
_RECENT = 100_000


class Wakeable(Protocol):
    """What waits for an offset: an ``anyio.Event``, or an append's own waiter."""

    def set(self) -> None: ...


class CatchUpStalled(StorageError):
    """The thread index stopped short of what the broker reports, for longer than allowed.

    Raised by a catch-up (``KafkaEventLog.catch_up``, and opening a log) when no record of
    ``partition`` was ingested for ``seconds`` while the index stood at ``offset`` below
    ``target``: the broker answered no fetch past that offset, or the index could not
    store what it fetched. Nothing was lost; trying again may work.
    """

    retriable = True

    def __init__(self, topic: str, partition: int, offset: int, target: int, seconds: float):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.target = target
        self.seconds = seconds
        super().__init__(
            f"the thread index of {topic!r} partition {partition} stayed at offset {offset} "
            f"for {seconds:g} s while the broker reports {target} records: it answered no "
            "fetch past that offset, or the index could not store what it fetched"
        )


class IndexFeed:
    """Feeds the thread index from the threads topic; see the module docstring.

    Args:
        bootstrap: Broker addresses.
        topic: The threads topic.
        partitions: Its partition count.
        index: The index to feed.
        options: Client settings.
        client_id: Client id for the broker's logs.
        writer: The index writer process that ingests for this feed, if the log has
            one (:mod:`eventstore.kafka._writer`); else ingests run in this process.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        index: ThreadIndex,
        options: KafkaOptions,
        client_id: str,
        writer: IndexWriter | None = None,
    ) -> None:
        self.topic = topic
        self.index = index
        self.writer = writer
        self._partition_count = partitions
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = options.consumer(bootstrap, client_id)
        self.next_offsets: dict[int, int] = {}
        self.highwaters: dict[int, int] = {}
        self.failure: EventStoreError | None = None
        #: ingest transactions so far (fetched and handed-over records alike)
        self.transactions = 0
        # offset * partitions + partition -> position of the last events ingested, in two
        # generations of at most _RECENT each: the older one is dropped whole when the
        # newer one fills up (dropping a dict's oldest keys one by one rescans the dead
        # slots at its front)
        self._recent: dict[int, int] = {}
        self._older: dict[int, int] = {}
        self.recent_limit = _RECENT
        self._changed = anyio.Event()
        # per partition: a heap of (offset, ticket, event) of appends waiting for an offset
        self._offset_waiters: dict[int, list[tuple[int, int, Wakeable]]] = {}
        self._tickets = itertools.count()
        self.closed = False
        #: partitions fed by the local sequencer (paused in the consumer)
        self._local: set[int] = set()
        # records fetched or handed over, waiting for the ingest loop; per partition, the
        # offset after the last one queued or being ingested
        self._queued: list[tuple[int, int, bytes]] = []
        self._ends: dict[int, int] = {}
        self._queue_changed = anyio.Event()
        self._room = anyio.Event()  # set whenever the ingest loop takes the queue

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
        """Fetch and ingest until cancelled: the consumer's fetch loop and the ingest loop
        (:meth:`ingest_queued`) side by side. A failure to ingest stops the feed for good
        and is kept in :attr:`failure` (every waiter then raises it)."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.ingest_queued)
            task_status.started()
            await self._fetch()
            tg.cancel_scope.cancel()

    async def _fetch(self) -> None:
        consumer = self._consumer
        watch = StallWatch(consumer, "the index consumer")
        while self.failure is None:
            await watch.check()
            batch: dict[Any, list[Any]] = await consumer.getmany(
                timeout_ms=100, max_records=_MAX_RECORDS
            )
            for tp, rs in batch.items():
                if rs:
                    self._enqueue(tp.partition, [(tp.partition, r.offset, r.value) for r in rs])
            for tp in self._partitions:
                hw = consumer.highwater(tp)
                if hw is not None:
                    self.highwaters[tp.partition] = hw
            if not self._queued:
                self._notify()  # an empty fetch: subscribers waiting for news look again
            await self.make_room()

    def hand_over(self, partition: int, base: int, values: list[bytes]) -> None:
        """Queue ``values``, just written by the local sequencer at offsets ``base``.. of
        ``partition``, if they continue the index there (with what is queued); else leave
        them to the consumer (see the module docstring).

        The ingest loop takes everything queued at once: rounds of several partitions,
        and whatever came while its last transaction ran, share one transaction (a
        transaction's fixed cost is most of the work for a round's few records: measured
        17 records 18-25 us each, 136 records 10-11 us each). The caller does not wait
        for it; :meth:`make_room` holds it back when the ingest falls behind.
        """
        if self.failure is not None or self.closed:
            return
        if self._ends.get(partition, self.next_offsets.get(partition, 0)) != base:
            self.hand_back(partition)
            return
        if partition not in self._local:
            self._local.add(partition)
            self._consumer.pause(self._partitions[partition])
        self._enqueue(partition, [(partition, base + i, value) for i, value in enumerate(values)])

    def _enqueue(self, partition: int, records: list[tuple[int, int, bytes]]) -> None:
        """Queue one partition's records (in offset order) for the ingest loop."""
        self._queued.extend(records)
        self._ends[partition] = max(self._ends.get(partition, 0), records[-1][1] + 1)
        self._queue_changed.set()

    @property
    def backlog(self) -> int:
        """Records queued for the ingest loop, not counting its transaction in progress."""
        return len(self._queued)

    async def make_room(self) -> None:
        """Wait while more than :data:`BACKLOG` records are queued (or until the feed
        stops): the fetch loop and the sequencer call this, so neither runs far ahead of
        the index."""
        while len(self._queued) > BACKLOG and self.failure is None and not self.closed:
            await self._room.wait()

    async def ingest_queued(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The ingest loop: ingest what is queued, :data:`INGEST_CHUNK` records per
        transaction, until cancelled or an ingest fails (that stops the feed). Records
        it took and did not ingest (it was cancelled) are left to the consumer.

        With an index writer, up to :data:`WRITER_DEPTH` chunks are in the child's hands
        at a time: it starts the next transaction while this process reads the last
        one's answer (and runs its other work), instead of waiting for this loop's turn.
        """
        task_status.started()
        depth = WRITER_DEPTH if self.writer is not None else 1
        inflight: deque[tuple[list[tuple[int, int, bytes]], Reply | None]] = deque()
        try:
            while self.failure is None:
                if not self._queued and not inflight:
                    await self._queue_changed.wait()
                    self._queue_changed = anyio.Event()
                    continue
                try:
                    while self._queued and len(inflight) < depth:
                        chunk = self._queued[:INGEST_CHUNK]
                        del self._queued[:INGEST_CHUNK]
                        self._room.set()
                        self._room = anyio.Event()
                        # in first: if sending fails or is cancelled, the finally below
                        # refetches its records
                        inflight.append((chunk, None))
                        if self.writer is not None:
                            inflight[-1] = (chunk, await self.writer.submit(chunk))
                    chunk, reply = inflight[0]
                    await self._ingest(chunk, reply)
                except EventStoreError as exc:
                    logger.error("the thread index stopped: %s", exc)
                    self.failure = exc
                    break
                inflight.popleft()
                ends = self._ends
                for partition in {r[0] for r in chunk}:
                    if self.next_offsets.get(partition, 0) >= ends.get(partition, 0):
                        ends.pop(partition, None)
                self._notify()
        finally:
            # taken and not ingested (failed, or cancelled): the consumer gets them again
            for partition in {r[0] for chunk, _ in inflight for r in chunk}:
                self._refetch(partition)
            self._room.set()
            self._notify()

    def hand_back(self, partition: int) -> None:
        """Let the consumer fetch ``partition`` again (if the local sequencer fed it), from
        the index's next offset."""
        if partition in self._local:
            self._refetch(partition)

    def _refetch(self, partition: int) -> None:
        """Fetch ``partition`` from the index's next offset: what is queued of it is
        dropped (the consumer fetches that too)."""
        self._local.discard(partition)
        self._ends.pop(partition, None)
        if any(r[0] == partition for r in self._queued):
            self._queued = [r for r in self._queued if r[0] != partition]
        tp = self._partitions[partition]
        self._consumer.seek(tp, self.next_offsets.get(partition, 0))
        self._consumer.resume(tp)

    async def _ingest(self, chunk: list[tuple[int, int, bytes]], sent: Reply | None) -> None:
        """Ingest ``chunk`` (records in offset order per partition) and advance the
        offsets.

        By the index writer process, if the log has one (``sent``: the chunk's submission
        to it, whose result this waits for; the ingest loop submits every chunk first).
        Otherwise (``sent`` None) on the event loop,
        unless that would wait for a lock (then in a worker thread): ingesting is Python
        work (reading each record's leading fields, building rows) around a short SQLite
        transaction that never syncs, and a worker thread would only add hand-offs of the
        GIL to it (measured on replay: 16-18k events/s in a thread, 23-27k on the loop,
        reads of the pages on the loop too). A chunk holds at most :data:`INGEST_CHUNK`
        records, a few milliseconds of work.
        """
        stored: list[Stored]
        if sent is not None:
            assert self.writer is not None  # only a writer hands out replies
            stored = await self.writer.result(sent)
        else:
            indexed = self.index.try_ingest(chunk)
            if indexed is None:
                indexed = await anyio.to_thread.run_sync(self.index.ingest, chunk)
            stored = [(e.partition, e.offset, e.position) for e in indexed]
        self.transactions += 1
        self._remember(stored)
        offsets = self.next_offsets
        for partition, offset, _ in chunk:
            # only forward: a fetch may bring records the local sequencer handed over first
            if offset >= offsets.get(partition, 0):
                offsets[partition] = offset + 1

    def _remember(self, stored: list[Stored]) -> None:
        """Keep the positions of recently ingested events, so appends need no query."""
        recent = self._recent
        n = self._partition_count
        for partition, offset, position in stored:
            recent[offset * n + partition] = position
        if len(recent) >= self.recent_limit:
            self._older, self._recent = recent, {}

    def recent_position(self, partition: int, offset: int) -> int | None:
        """The position of the event at ``offset`` of ``partition`` if it is among the
        last ``recent_limit`` (at least) events ingested, else None (ask the index)."""
        key = offset * self._partition_count + partition
        position = self._recent.get(key)
        return self._older.get(key) if position is None else position

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
