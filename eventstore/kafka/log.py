"""``KafkaEventLog``: the event log on Kafka topics, for more than one machine.

Appends travel the command path (``docs/kafka.md``): ``append()`` sends an append command
to the commands topic and waits for its outcome; the sequencer that owns the thread's
partition (a member of a consumer group, possibly in another process) decides it, writes
the events to the threads topic, and answers. Reads are served by a local thread index that
a consumer of the threads topic keeps up to date; ``append()`` returns once its events are
in this log's index, so a process reads its own writes.

Every ``KafkaEventLog`` runs, in its task group: the index consumer, an outcome listener
on the commands topic, (unless ``sequencer=False``) a sequencer group member, a task that
times out appends whose outcome is late, and, while appends wait to be sent, one sender
per partition (appends to a partition that arrive while its command record is on the way
go out together in the next one; ``docs/kafka.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from aiokafka import TopicPartition

from eventstore._append import prepare_append
from eventstore._loop import decode_on_loop, decode_positioned_on_loop
from eventstore._sqlite import decode_prefix
from eventstore.codec import Codec
from eventstore.envelope import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, ThreadInfo
from eventstore.errors import (
    BrokerUnavailable,
    EventStoreError,
    InvalidEvent,
    LogClosed,
)
from eventstore.kafka._client import (
    UNREACHABLE,
    KafkaOptions,
    StallWatch,
    describe,
    is_host_port,
    stop_quietly,
    with_retry,
)
from eventstore.kafka._feed import CatchUpStalled, IndexFeed
from eventstore.kafka._index import ThreadIndex
from eventstore.kafka._sequencer import Sequencer
from eventstore.kafka._topics import KafkaTopology, ensure_topics, partition_of
from eventstore.kafka._wire import (
    BATCH,
    CONTENT_TYPE,
    KIND,
    KIND_APPEND,
    KIND_OUTCOME,
    REPLY_TO,
    AppendCommand,
    AppendOutcome,
    batch_overhead,
    command_batch,
    decode_outcomes,
    encode_command,
    header,
)
from eventstore.kafka._writer import IndexWriter
from eventstore.schema import shipped_schemas

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENT_BYTES = 1 << 20
#: Commands for one partition share a record up to this size (a bigger command goes alone).
_BATCH_BYTES = 1 << 20
#: Thread ids whose partition is remembered (the cache starts over when full).
_PARTITION_CACHE = 100_000
#: Command records whose commands are held for this log's own sequencer, at most (it
#: takes each within a round; one record per partition is in flight at a time).
_HELD_BATCHES = 256
#: Seconds between looks at the append deadlines (how late a timeout may fire).
_EXPIRY_TICK = 0.05
#: Seconds the index writer process may take to start and open the index.
_WRITER_START_TIMEOUT = 60.0
#: Events a subscriber reads (and decodes, on the loop) at a time.
SUBSCRIBE_PAGE = 500


class AppendTimedOut(EventStoreError):
    """No outcome arrived for an append command in time.

    The command was sent; whether it was applied is unknown. Retrying the same append
    (same event ids) is safe and tells: it returns the original positions if it was.
    """

    retriable = True

    def __init__(self, thread_id: str, command_id: str, timeout: float, group_id: str) -> None:
        self.thread_id = thread_id
        self.command_id = command_id
        self.timeout = timeout
        super().__init__(
            f"no outcome for append command {command_id} on thread {thread_id!r} within "
            f"{timeout:g} s: is a sequencer of group {group_id!r} running? Retrying the "
            "append with the same event ids is safe"
        )


class _Waiter:
    """One append in flight. It is woken (:meth:`set`) once: when its command could not be
    sent (``error``), when it was rejected, or when it was accepted and its events are in
    the index (``outcome``); so an append wakes once, however many steps it waits for.
    ``deadline`` (``time.monotonic()``) is when it stops waiting for an outcome.

    The append awaits ``woken``, a bare asyncio future (aiokafka ties this backend to
    asyncio anyway): hundreds of appends wait at a time, and a future's wake-up costs a
    quarter of an ``anyio.Event``'s (measured: 1.0 against 3.9 us per wait and wake).
    """

    __slots__ = ("deadline", "error", "outcome", "woken")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outcome: AppendOutcome | None = None
        self.error: BaseException | None = None

    def set(self) -> None:
        """Wake the append (a no-op if it was woken, or cancelled, before)."""
        if not self.woken.done():
            self.woken.set_result(None)


class _Batch:
    """Encoded commands for one partition that go out as one ``AppendBatch`` record."""

    __slots__ = ("commands", "items", "sent", "size", "waiters")

    def __init__(self) -> None:
        self.commands: list[AppendCommand] = []
        self.items: list[bytes] = []
        self.waiters: list[_Waiter] = []
        self.size = 0
        self.sent = anyio.Event()


def default_index_path(data_dir: Path, bootstrap: str, topology: KafkaTopology) -> Path:
    """Where a log keeps its thread index under ``data_dir``: one file per cluster and topic."""
    key = f"{bootstrap}|{topology.threads.name}".encode()
    return data_dir / f"kafka-index-{hashlib.sha256(key).hexdigest()[:16]}.db"


@dataclasses.dataclass(frozen=True, slots=True)
class SequencerStatus:
    """What a log's sequencer has done so far (:meth:`KafkaEventLog.sequencer_status`).

    Attributes:
        group_id: The sequencers' consumer group.
        partitions: Partitions this member owns now (it is the single writer of their
            threads).
        rounds: Rounds decided (one per fetch of commands from one partition).
        accepted: Commands whose events it wrote.
        duplicates: Retried commands answered with their original positions.
        rejected: Commands refused (stale expected version, misplaced, bad events).
    """

    group_id: str
    partitions: tuple[int, ...]
    rounds: int
    accepted: int
    duplicates: int
    rejected: int


class KafkaEventLog:
    """The event log on Kafka. See the module docstring and ``docs/kafka.md``.

    Args:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        index_path: The local thread index file (``":memory:"`` for a throwaway one that
            is rebuilt from the topic at every start).
        topology: Topic names, partitions and replication (default ``agentlog.*``, 8).
        group_id: The sequencers' consumer group (default ``<threads topic>.sequencer``).
        sequencer: Whether this log takes part in sequencing. At least one process per
            cluster must; a log without it only sends commands.
        max_event_bytes: Largest encoded event accepted (default 1 MiB).
        outcome_timeout: Seconds an append waits for its outcome before
            :class:`AppendTimedOut`.
        options: Kafka client settings (timeouts, linger, fetch wait, retries).
        codec: The codec (default: the shipped schemas).
        client_id: This log's name in the broker's logs and in ``reply-to`` headers
            (default: a fresh unique id; two open logs must not share one).
        catch_up: Whether opening waits until the index holds every event the topic had
            (see :meth:`catch_up`); otherwise reads start from what the index file had.
        catch_up_stall: Seconds a catch-up waits for the next record of a partition that
            is behind before it gives up with :class:`CatchUpStalled` (a catch-up that
            keeps ingesting may take as long as it needs).
        index_writer: Whether a child process writes the index
            (:mod:`eventstore.kafka._writer`: ingesting then runs on another core than
            this process's event loop). ``None`` (the default): when the index is a file
            and the codec has the shipped schemas (the child reads records with those); an
            in-memory index is always written in this process.
    """

    def __init__(
        self,
        bootstrap: str,
        index_path: str | Path = ":memory:",
        *,
        topology: KafkaTopology | None = None,
        group_id: str | None = None,
        sequencer: bool = True,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        outcome_timeout: float = 30.0,
        options: KafkaOptions | None = None,
        codec: Codec | None = None,
        client_id: str | None = None,
        catch_up: bool = True,
        catch_up_stall: float = 60.0,
        index_writer: bool | None = None,
    ) -> None:
        if not bootstrap or not all(is_host_port(a.strip()) for a in bootstrap.split(",")):
            raise ValueError(f"bootstrap must be host:port[,host:port], got {bootstrap!r}")
        if max_event_bytes < 64:
            raise ValueError(f"max_event_bytes must be at least 64, got {max_event_bytes}")
        if catch_up_stall <= 0:
            raise ValueError(f"catch_up_stall must be positive, got {catch_up_stall}")
        self.bootstrap = bootstrap
        self.topology = topology or KafkaTopology.default()
        self.group_id = group_id or f"{self.topology.threads.name}.sequencer"
        self.index_path = index_path
        self.max_event_bytes = max_event_bytes
        self.outcome_timeout = outcome_timeout
        self.options = options or KafkaOptions()
        self.codec = codec or Codec()
        self.client_id = client_id or f"agentlog-{uuid.uuid4().hex[:12]}"
        self._run_sequencer = sequencer
        self._catch_up_on_open = catch_up
        self.catch_up_stall = catch_up_stall
        in_memory = str(index_path) == ":memory:"
        shipped = self.codec.schemas is shipped_schemas()
        if index_writer and in_memory:
            raise ValueError("index_writer=True needs an index file, not ':memory:'")
        if index_writer and not shipped:
            raise ValueError(
                "index_writer=True reads records with the shipped schemas; this log's codec "
                "has others (leave index_writer unset to ingest in this process)"
            )
        self._use_writer = not in_memory and shipped if index_writer is None else index_writer
        self._writer: IndexWriter | None = None
        self._state = "unopened"
        self._index: ThreadIndex | None = None
        self._feed: IndexFeed | None = None
        self._sequencer: Sequencer | None = None
        self._producer: Any = None
        self._outcomes: Any = None
        # The outcome listener's partitions that the local sequencer decides: the offset
        # to read up to before pausing (earlier owners' outcomes are below it), and the
        # offset at which each paused one stopped (see _quiet_listener)
        self._pause_after: dict[int, int] = {}
        self._paused_at: dict[int, int] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._waiters: dict[str, _Waiter] = {}
        # per partition: command batches not sent yet (the last one still filling), and
        # the partitions whose sender task is running
        self._unsent: dict[int, deque[_Batch]] = {}
        self._sending: set[int] = set()
        self._batch_limit = min(_BATCH_BYTES, self.options.max_batch_bytes)
        self._inflight = 0
        self._idle = anyio.Event()
        self._reply_to = self.client_id.encode()
        self._partitions = self.topology.commands.partitions
        self._partition_cache: dict[str, int] = {}
        self._batch_numbers = itertools.count()
        # Command ids: unique to this log object (a fresh random part, even when client_id
        # is given and a restarted process reuses it: an outcome meant for a command of an
        # earlier run must not match one of this run), then a count. A uuid7 per append
        # cost 1-5 us, about 3% of the command path.
        self._command_prefix = f"{uuid.uuid4().hex[:16]}-"
        self._command_numbers = itertools.count(1)
        self._held_batches: OrderedDict[bytes, list[AppendCommand]] = OrderedDict()

    def __repr__(self) -> str:
        return f"KafkaEventLog({self.bootstrap!r}, {self.topology.threads.name!r}, {self._state})"

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise LogClosed(repr(self), f"{self._state} and cannot be reopened")
        self._state = "opening"
        try:
            await self._open()
        except BaseException as exc:
            self._state = "closing"
            await self._shutdown()
            self._state = "closed"
            if isinstance(exc, UNREACHABLE):
                raise BrokerUnavailable(self.bootstrap, describe(exc)) from exc
            raise
        self._state = "open"
        logger.info(
            "opened Kafka event log on %s (topics %s, %s; sequencer %s)",
            self.bootstrap,
            self.topology.threads.name,
            self.topology.commands.name,
            self.group_id if self._run_sequencer else "off",
        )
        return self

    async def _open(self) -> None:
        opts = self.options
        await ensure_topics(self.bootstrap, self.topology, request_timeout=opts.request_timeout)
        if isinstance(self.index_path, Path):
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
        self._index = await anyio.to_thread.run_sync(ThreadIndex, self.index_path, self.codec)
        if self._use_writer:
            self._writer = IndexWriter(self.index_path)
            with anyio.fail_after(_WRITER_START_TIMEOUT):
                await self._writer.start()
        partitions = self.topology.threads.partitions
        self._feed = IndexFeed(
            self.bootstrap,
            self.topology.threads.name,
            partitions,
            self._index,
            opts,
            f"{self.client_id}-index",
            self._writer,
        )
        with anyio.fail_after(opts.request_timeout * 2):
            self._producer = opts.producer(self.bootstrap, self.client_id)
            await self._producer.start()
            await self._feed.start()
            self._outcomes = opts.consumer(self.bootstrap, f"{self.client_id}-outcomes")
            await self._outcomes.start()
            commands = [TopicPartition(self.topology.commands.name, p) for p in range(partitions)]
            self._outcomes.assign(commands)
            # Start at the end: outcomes of commands sent before this log opened are not ours.
            await self._outcomes.seek_to_end(*commands)
            for tp in commands:
                await self._outcomes.position(tp)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._supervise, "the index consumer", self._feed.run)
        self._tg.start_soon(self._supervise, "the outcome listener", self._listen)
        self._tg.start_soon(self._expire)
        if self._run_sequencer:
            self._sequencer = Sequencer(
                bootstrap=self.bootstrap,
                topology=self.topology,
                group_id=self.group_id,
                index=self._index,
                feed=self._feed,
                producer=self._producer,
                codec=self.codec,
                options=opts,
                client_id=f"{self.client_id}-sequencer",
                local_reply_to=self.client_id,
                deliver=self._deliver,
                take_local=self._take_batch,
                on_deciding=self._pause_after.__setitem__,
                on_released=self._resume_listener,
            )
            await self._sequencer.start()
            self._tg.start_soon(self._supervise, "the sequencer", self._sequencer.run)
            # The broker holds a new group's first join about half a session timeout.
            join_timeout = opts.session_timeout_ms / 1000 * 3 + opts.request_timeout
            with anyio.move_on_after(join_timeout):
                await self._sequencer.joined.wait()
            if not self._sequencer.joined.is_set():
                raise BrokerUnavailable(
                    self.bootstrap,
                    f"the sequencer did not join consumer group {self.group_id!r} "
                    f"within {join_timeout:g} s",
                )
        if self._catch_up_on_open:
            await self._catch_up()

    async def catch_up(self) -> int:
        """Wait until the local index holds every event the threads topic has now.

        Appends made through this log are in the index when they return; this makes the
        appends of other processes that returned before the call visible to reads too.

        Returns:
            The index's head position afterwards.

        Raises:
            BrokerUnavailable: the end offsets could not be read from the broker.
            CatchUpStalled: a partition behind got no record into the index for
                ``catch_up_stall`` seconds.
            StorageError: the index stopped.
            LogClosed: the log is not open.
        """
        index = self._require_open()
        await self._catch_up()
        return await anyio.to_thread.run_sync(index.head)

    async def _catch_up(self) -> None:
        assert self._feed is not None
        feed = self._feed
        try:
            ends = await feed.end_offsets()
        except UNREACHABLE as exc:
            raise BrokerUnavailable(self.bootstrap, describe(exc)) from exc
        behind = sum(max(0, end - feed.next_offsets.get(p, 0)) for p, end in ends.items())
        if behind:
            logger.info("catching up the thread index: about %d events to ingest", behind)
        for p, end in ends.items():
            while True:
                reached = feed.next_offsets.get(p, 0)
                with anyio.move_on_after(self.catch_up_stall):
                    await feed.wait_caught_up(p, end)  # (again: hands the partition back)
                    break
                if feed.next_offsets.get(p, 0) == reached:
                    target = max(end, feed.highwaters.get(p, 0))
                    raise CatchUpStalled(
                        self.topology.threads.name, p, reached, target, self.catch_up_stall
                    )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Wait for the appends in flight (their outcomes), then stop and disconnect.

        Idempotent. Appends that start after this call raise :class:`LogClosed`.
        """
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closing"
        if self._inflight:
            with anyio.move_on_after(self.outcome_timeout, shield=True):
                await self._idle.wait()
        await self._shutdown()
        self._state = "closed"
        logger.info("closed Kafka event log on %s", self.bootstrap)

    async def _shutdown(self) -> None:
        """Stop the background tasks, then (shielded from cancellation) the clients."""
        if self._tg is not None:
            tg, self._tg = self._tg, None
            # A sequencer round is not cut short: its commit would be left dangling.
            async with self._sequencer.idle() if self._sequencer else _nothing():
                tg.cancel_scope.cancel()
                await tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self._stop_clients()

    async def _stop_clients(self) -> None:
        if self._feed is not None:
            self._feed.wake()  # subscribers waiting for events see the log closed
        if self._sequencer is not None:
            await stop_quietly(self._sequencer.consumer, "the sequencer")
        if self._feed is not None:
            await stop_quietly(self._feed.consumer, "the index consumer")
        if self._outcomes is not None:
            await stop_quietly(self._outcomes, "the outcome listener")
        if self._producer is not None:
            await stop_quietly(self._producer, "the producer")
        for waiter in self._waiters.values():
            waiter.set()
        for batches in self._unsent.values():
            for batch in batches:
                closed = LogClosed(repr(self), self._state)
                for waiter in batch.waiters:
                    waiter.error = closed
                    waiter.set()
                batch.sent.set()
        self._unsent.clear()
        if self._writer is not None:
            await self._writer.aclose()
        if self._index is not None:
            await anyio.to_thread.run_sync(self._index.close)

    def _require_open(self) -> ThreadIndex:
        if self._state != "open" or self._index is None:
            raise LogClosed(repr(self), self._state)
        assert self._feed is not None
        self._feed.check()
        return self._index

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; when it fails (the broker is away, say), log and restart
        it after a pause that doubles up to 10 s. It never takes the log's task group (and
        the task that opened the log) down with it."""
        pause = max(0.1, self.options.retry.initial_delay)
        while True:
            try:
                await loop()
                return
            except Exception as exc:
                logger.warning("%s failed: %s; restarting it in %.1f s", name, describe(exc), pause)
            await anyio.sleep(pause)
            pause = min(10.0, pause * 2)

    # --- outcomes ----------------------------------------------------------------------

    async def _listen(self) -> None:
        consumer = self._outcomes
        reply_to = self._reply_to
        watch = StallWatch(consumer, "the outcome listener")
        while True:
            await watch.check()
            batch: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=200, max_records=5000)
            if self._pause_after:
                await self._quiet_listener()
            for records in batch.values():
                for record in records:
                    if header(record.headers, KIND) != KIND_OUTCOME:
                        continue
                    if header(record.headers, REPLY_TO) != reply_to:
                        continue
                    try:
                        outcomes = decode_outcomes(record.value)
                    except EventStoreError as exc:
                        logger.error("skipping unreadable outcome record: %s", exc)
                        continue
                    for outcome in outcomes:
                        self._deliver(outcome)

    async def _quiet_listener(self) -> None:
        """Pause the outcome listener on the partitions the local sequencer decides, once
        it has read every outcome their earlier owners wrote.

        The sequencer hands this log's outcomes there over in process, so the listener
        would fetch every command record of those partitions (this log's own, events and
        all) only to skip them: measured, a tenth of the append path's CPU and 40% of the
        broker's. :meth:`_resume_listener` undoes it when the partition moves away.
        """
        consumer = self._outcomes
        topic = self.topology.commands.name
        for p, until in list(self._pause_after.items()):
            tp = TopicPartition(topic, p)
            position = await consumer.position(tp)
            if position >= until and self._pause_after.get(p) == until:
                del self._pause_after[p]
                consumer.pause(tp)
                self._paused_at[p] = position
                logger.debug("outcome listener paused on partition %d at offset %d", p, position)

    def _resume_listener(self, partition: int, decided_to: int) -> None:
        """The local sequencer no longer decides ``partition``: listen there again, from
        the first command it did not decide (the outcomes of this log's later commands
        come after them) or where the listener paused, whichever is later."""
        self._pause_after.pop(partition, None)
        paused_at = self._paused_at.pop(partition, None)
        if paused_at is None:
            return  # never paused: the listener read on
        tp = TopicPartition(self.topology.commands.name, partition)
        self._outcomes.seek(tp, max(paused_at, decided_to))
        self._outcomes.resume(tp)
        logger.debug(
            "outcome listener resumed on partition %d at offset %d",
            partition,
            max(paused_at, decided_to),
        )

    def _deliver(self, outcome: AppendOutcome) -> None:
        """Hand ``outcome`` to the append waiting for it (if any, and if not answered yet):
        from the outcome listener, or straight from this log's own sequencer."""
        waiter = self._waiters.get(outcome.command_id)
        if waiter is None or waiter.outcome is not None:
            return
        waiter.outcome = outcome
        if outcome.status == "rejected" or self._feed is None:
            waiter.set()
        else:  # read-your-writes: the append returns once its events are in the index
            self._feed.when_ingested(outcome.partition, max(outcome.offsets), waiter)

    # --- writing -----------------------------------------------------------------------

    async def append(
        self,
        thread_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = None,
    ) -> AppendResult:
        index = self._require_open()
        prepared = prepare_append(
            self.codec, thread_id, events, expected_version, self.max_event_bytes
        )
        command = AppendCommand(
            self._command_prefix + str(next(self._command_numbers)),
            thread_id,
            expected_version,
            self.client_id,
            tuple(prepared),
        )
        item = encode_command(command)
        if len(item) + batch_overhead(self.client_id, 1) > self.options.max_batch_bytes:
            raise InvalidEvent(
                events[0].type,
                "events",
                f"this append encodes to {len(item)} bytes, more than one Kafka record batch "
                f"may hold ({self.options.max_batch_bytes}); append fewer events at a time",
            )
        waiter = _Waiter(time.monotonic() + self.outcome_timeout)
        self._waiters[command.command_id] = waiter
        self._inflight += 1
        try:
            outcome = await self._outcome(command, item, waiter)
            assert self._feed is not None
            recent = self._feed.recent_position
            p = outcome.partition
            positions = [recent(p, offset) for offset in outcome.offsets]
            if None in positions:  # a retry of an old append: ask the index
                ids = [e.event_id for e in events]
                located = await anyio.to_thread.run_sync(index.find, ids)
                positions = [located[e].position for e in ids]
            return AppendResult(
                thread_id,
                tuple(p for p in positions if p is not None),
                outcome.first_seq,
                outcome.version,
                deduplicated=outcome.status == "duplicate",
            )
        finally:
            del self._waiters[command.command_id]
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
                self._idle = anyio.Event()

    async def _outcome(self, command: AppendCommand, item: bytes, waiter: _Waiter) -> AppendOutcome:
        """Send ``command`` (encoded as ``item``); return its outcome once its events are in
        the index, or raise why not.

        ``outcome_timeout`` bounds the wait for the outcome; a send still being retried is
        waited for (its own retries bound it), and an accepted append is never reported as
        timed out while the index catches up with it.
        """
        partition = self._partition_of(command.thread_id)
        batch = self._enqueue(partition, command, item, waiter)
        # the timeout is kept by _expire (a cancel scope per append costs more than the
        # rest of the wait)
        await waiter.woken
        assert self._feed is not None
        self._feed.check()
        if waiter.error is not None:
            raise waiter.error
        outcome = waiter.outcome
        if outcome is None:
            if not batch.sent.is_set():
                await batch.sent.wait()
                if waiter.error is not None:
                    raise waiter.error
            if self._state != "open":
                raise LogClosed(repr(self), self._state)
            raise AppendTimedOut(
                command.thread_id, command.command_id, self.outcome_timeout, self.group_id
            )
        if outcome.status == "rejected":
            raise outcome.error()
        await self._feed.wait_ingested(outcome.partition, max(outcome.offsets))
        return outcome

    async def _expire(self) -> None:
        """Wake the appends whose outcome did not come within ``outcome_timeout``.

        Looked at every 50 ms. ``_waiters`` holds exactly the appends in flight (each
        removes itself when it returns or raises) in the order they started, and every
        deadline is ``outcome_timeout`` after its start, so the expired ones come first.
        Nothing here keeps a finished append's waiter alive: holding them for the whole
        timeout (a queue of deadlines, as this once was) kept ~30 s of appends' objects in
        memory, and every full pass of the garbage collector walked them (68 ms each after
        30 000 appends, 6% of the append path's time).
        """
        while True:
            await anyio.sleep(_EXPIRY_TICK)
            self._wake_expired(time.monotonic())

    def _wake_expired(self, now: float) -> None:
        # A function of its own, so that no loop variable outlives the pass.
        for waiter in self._waiters.values():
            if waiter.deadline > now:
                break
            waiter.set()  # a no-op for an append already woken

    def _remember_batch(self, number: bytes, commands: list[AppendCommand]) -> None:
        """Keep a command record's commands for this log's own sequencer (bounded: a
        record that another process's sequencer decides is never taken)."""
        held = self._held_batches
        held[number] = commands
        while len(held) > _HELD_BATCHES:
            held.popitem(last=False)

    def _take_batch(self, number: bytes) -> list[AppendCommand] | None:
        """The commands of this log's command record ``number``, once (the sequencer then
        need not decode what this process encoded), or ``None``: decode the record."""
        return self._held_batches.pop(number, None)

    def _partition_of(self, thread_id: str) -> int:
        """The thread's partition (murmur2 is pure Python in aiokafka: remembered)."""
        cache = self._partition_cache
        partition = cache.get(thread_id)
        if partition is None:
            if len(cache) >= _PARTITION_CACHE:
                cache.clear()
            partition = cache[thread_id] = partition_of(thread_id, self._partitions)
        return partition

    def _enqueue(
        self, partition: int, command: AppendCommand, item: bytes, waiter: _Waiter
    ) -> _Batch:
        """Add a command to the partition's batch that is filling; start its sender.

        Each partition has one command record in flight at a time; the commands that come
        while it is sent go out together in the next one. One appender alone waits for no
        one, and many share records (and the sequencer's fetches) without a linger.
        """
        unsent = self._unsent.get(partition)
        if unsent is None:
            unsent = self._unsent[partition] = deque()
        if not unsent or (unsent[-1].items and unsent[-1].size + len(item) > self._batch_limit):
            unsent.append(_Batch())
        batch = unsent[-1]
        batch.commands.append(command)
        batch.items.append(item)
        batch.waiters.append(waiter)
        batch.size += len(item)
        if partition not in self._sending:
            assert self._tg is not None
            self._sending.add(partition)
            self._tg.start_soon(self._send_batches, partition, unsent)
        return batch

    async def _send_batches(self, partition: int, unsent: deque[_Batch]) -> None:
        """Send the partition's command batches in order until none is left."""
        topic = self.topology.commands.name
        common = [(KIND, KIND_APPEND), (REPLY_TO, self._reply_to), CONTENT_TYPE]
        try:
            while unsent:
                batch = unsent.popleft()
                value = command_batch(self.client_id, batch.items)
                number = str(next(self._batch_numbers)).encode()
                headers = [*common, (BATCH, number)]
                if self._sequencer is not None and self._sequencer.owns(partition):
                    self._remember_batch(number, batch.commands)

                async def send(value: bytes = value, headers: list[Any] = headers) -> Any:
                    future = await self._producer.send(
                        topic, value, partition=partition, headers=headers
                    )
                    return await future

                try:
                    await with_retry(
                        self.options.retry,
                        self.bootstrap,
                        f"sending {len(batch.items)} append command(s) to {topic}[{partition}]",
                        send,
                    )
                except Exception as exc:  # every append of the batch raises it
                    for waiter in batch.waiters:
                        if waiter.outcome is None:
                            waiter.error = exc
                            waiter.set()
                finally:
                    batch.sent.set()
        finally:
            self._sending.discard(partition)

    # --- reading -----------------------------------------------------------------------

    async def read_thread(
        self,
        thread_id: str,
        from_seq: int = 1,
        to_seq: int | None = None,
        *,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        index = self._require_open()
        rows = await anyio.to_thread.run_sync(index.thread_rows, thread_id, from_seq, to_seq)
        return await decode_on_loop(rows, lambda piece: decode_prefix(self.codec, piece, until))

    async def read_all(self, from_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        index = self._require_open()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        rows = await anyio.to_thread.run_sync(index.all_rows, from_position, limit)
        return await decode_positioned_on_loop(rows, self.codec.decode)

    async def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        position = from_position
        while True:
            index = self._require_open()
            assert self._feed is not None
            changed = self._feed.next_change()
            # Decoding is Python work: on the loop (a page of a few milliseconds), as the
            # feed's ingest is, rather than in a thread that would only trade the GIL.
            batch = index.call_if_free(index.read_all, position, SUBSCRIBE_PAGE)
            if batch is None:  # a worker thread holds the index
                batch = await anyio.to_thread.run_sync(index.read_all, position, SUBSCRIBE_PAGE)
            else:
                await anyio.lowlevel.checkpoint()
            for event in batch:
                yield event
            if batch:
                position = batch[-1].position + 1
                continue
            await changed.wait()

    async def read_event(self, event_id: str) -> RecordedEvent | None:
        index = self._require_open()
        found = (await anyio.to_thread.run_sync(index.find, [event_id])).get(event_id)
        if found is None:
            return None
        events = await self.read_thread(found.thread_id, found.seq, found.seq)
        return events[0] if events else None

    async def version(self, thread_id: str) -> int:
        index = self._require_open()
        return await anyio.to_thread.run_sync(index.version, thread_id)

    async def head(self) -> int:
        index = self._require_open()
        return await anyio.to_thread.run_sync(index.head)

    async def threads(self, *, after: str = "", limit: int = 1000) -> list[ThreadInfo]:
        """List the threads in the index in id order, ``limit`` at a time, after ``after``."""
        index = self._require_open()
        rows = await anyio.to_thread.run_sync(index.threads, limit, after)
        return [ThreadInfo(*row) for row in rows]

    def sequencer_status(self) -> SequencerStatus | None:
        """What this log's sequencer has done so far; None when it runs none
        (``sequencer=False``, or the log was never opened)."""
        seq = self._sequencer
        if seq is None:
            return None
        answered = seq.answered
        return SequencerStatus(
            self.group_id,
            tuple(seq.owned),
            seq.rounds,
            answered["accepted"],
            answered["duplicate"],
            answered["rejected"],
        )


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


__all__ = ["AppendTimedOut", "KafkaEventLog", "SequencerStatus", "default_index_path"]
