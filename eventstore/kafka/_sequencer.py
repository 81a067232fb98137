"""The sequencer: the single writer of every thread in the partitions it owns.

A member of the consumer group ``group_id`` on the commands topic. For each partition it
owns it works in rounds: take the append commands fetched for the partition (each record
an ``AppendBatch`` of one client's commands), decide each (:func:`eventstore.decide.decide`,
the embedded log's rule), write the accepted events to the same partition of the threads
topic as **one record batch** (so a round lands whole or not at all, in order), wait for
the broker's acknowledgement, hand the outcomes of its own log's commands over in process,
write the others (and every rejection) to the commands topic, one record per client, and
only then let the commands' offsets be committed (in the background, one request at a
time, while the next rounds are decided).

State per owned partition: the versions of the threads it decided on, and the events it
produced that the local thread index has not ingested yet. Everything else comes from the
index. When a partition is assigned, the sequencer first waits until the index holds all
of that partition's events (:meth:`IndexFeed.wait_caught_up`): the previous owner wrote
its last round before giving the partition up, so after that the versions are exact.

If writing a round fails (after the retries), the round's effect is unknown: the sequencer
forgets the partition's state, seeks back to the round's first command, and decides it
again once the index is caught up; a round that did land then reads as retries
(``duplicate``), one that did not is written again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from aiokafka import ConsumerRebalanceListener, TopicPartition

from eventstore.codec import Codec, encode_long
from eventstore.decide import Accepted, Rejected, StoredEvent, decide
from eventstore.errors import EventStoreError, IdempotencyConflict, WrongExpectedVersion
from eventstore.kafka._client import KafkaOptions, StallWatch, describe, with_retry
from eventstore.kafka._feed import IndexFeed
from eventstore.kafka._index import ThreadIndex
from eventstore.kafka._topics import KafkaTopology, partition_of
from eventstore.kafka._wire import (
    BATCH,
    CONTENT_TYPE,
    IDEMPOTENCY_CONFLICT,
    KIND,
    KIND_APPEND,
    KIND_OUTCOME,
    REPLY_TO,
    UNKNOWN_SCHEMA,
    WRONG_EXPECTED_VERSION,
    WRONG_PARTITION,
    AppendCommand,
    AppendOutcome,
    Status,
    decode_commands,
    encode_outcomes,
    header,
)
from eventstore.payloads import CommandRejected

logger = logging.getLogger(__name__)

_MAX_RECORDS = 2000
#: Seconds a closing log waits for the sequencer's round in progress.
_IDLE_TIMEOUT = 15.0


@dataclasses.dataclass(slots=True)
class _Produced:
    """An event this sequencer wrote: where it is (offset known once acknowledged)."""

    thread_id: str
    seq: int
    offset: int = -1


@dataclasses.dataclass(slots=True)
class _PartitionState:
    ready: bool = False
    versions: dict[str, int] = dataclasses.field(default_factory=dict)
    produced: dict[str, _Produced] = dataclasses.field(default_factory=dict)
    # (last offset, event ids) of acknowledged rounds, to forget once the index has them
    unindexed: deque[tuple[int, list[str]]] = dataclasses.field(default_factory=deque)
    # the commands-topic offset after the last command this member decided (-1: none yet)
    decided_to: int = -1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, sequencer: Sequencer) -> None:
        self._sequencer = sequencer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._sequencer.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._sequencer.assign({tp.partition for tp in assigned})


class _Ahead:
    """A round's commands, the threads whose version it must look up (``unknown``) and
    those of another partition (``misplaced``), and what the index knew of them when
    they were looked up (``located`` None: not yet)."""

    __slots__ = ("commands", "located", "misplaced", "unknown", "versions")

    def __init__(
        self, commands: list[AppendCommand], unknown: list[str], misplaced: set[str]
    ) -> None:
        self.commands = commands
        self.unknown = unknown
        self.misplaced = misplaced
        self.versions: dict[str, int] = {}
        self.located: Any = None


class Sequencer:
    """Decides and writes the append commands of the partitions this member owns.

    Args:
        bootstrap: Broker addresses.
        topology: The two topics.
        group_id: The consumer group every sequencer of this log joins.
        index: The local thread index (versions and stored event ids).
        feed: The index consumer (to wait for the index to catch up).
        producer: A started producer (shared with the log).
        codec: The codec whose schema the events must be written with.
        options: Client settings (retries, timeouts).
        client_id: Client id for the broker's logs.
        local_reply_to: The ``reply-to`` of the log this sequencer runs in: its commands'
            outcomes are handed to ``deliver`` as soon as their events are acknowledged, and
            only its rejections are also written as outcome records (for the audit trail;
            its accepted appends are recorded by their events).
        deliver: Where those outcomes go.
        take_local: Given the ``batch`` header of a command record from that log, the
            commands it holds in memory (the record's very contents), or ``None``; the
            record is then decoded as any other.
        on_deciding: Called with ``(partition, offset)`` when this member starts deciding
            a partition's commands (caught up with its index): every outcome an earlier
            owner wrote on that partition is below ``offset`` (the commands topic's high
            watermark as fetched after the assignment; the earlier owner wrote them before
            it committed and gave the partition up). From then on this member decides the
            local log's commands there and hands their outcomes over, so the log's outcome
            listener need not fetch that partition once it has read up to ``offset``.
        on_released: Called with ``(partition, offset)`` when the partition is revoked:
            ``offset`` is the first command this member did not decide (-1 if it decided
            none), so the outcomes of the local log's later commands are at or after it.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        topology: KafkaTopology,
        group_id: str,
        index: ThreadIndex,
        feed: IndexFeed,
        producer: Any,
        codec: Codec,
        options: KafkaOptions,
        client_id: str,
        local_reply_to: str = "",
        deliver: Callable[[AppendOutcome], None] | None = None,
        take_local: Callable[[bytes], list[AppendCommand] | None] | None = None,
        on_deciding: Callable[[int, int], None] | None = None,
        on_released: Callable[[int, int], None] | None = None,
    ) -> None:
        self._on_deciding = on_deciding
        self._on_released = on_released
        self.bootstrap = bootstrap
        self._local = local_reply_to
        self._local_header = local_reply_to.encode()
        self._deliver = deliver
        self._take_local = take_local
        self.handed_over = 0  # command records taken from the local log, not decoded
        self.topology = topology
        self.group_id = group_id
        self.index = index
        self.feed = feed
        self.producer = producer
        self.options = options
        self._prefix = codec._prefix  # the single-object header events must carry
        self._headers: dict[str, list[tuple[str, bytes]]] = {}
        self._consumer = options.consumer(
            bootstrap,
            client_id,
            group_id=group_id,
            session_timeout_ms=options.session_timeout_ms,
            heartbeat_interval_ms=options.heartbeat_interval_ms,
        )
        self._partitions: dict[int, _PartitionState] = {}
        self._lock = anyio.Lock()
        self._uncommitted: dict[Any, int] = {}
        self._commit_wanted = anyio.Event()
        self.joined = anyio.Event()
        self.rounds = 0
        #: Index lookups made for rounds (the rounds of one fetch share one).
        self.lookups = 0
        #: Commands answered so far, by outcome status (accepted, duplicate, rejected).
        self.answered: Counter[str] = Counter()

    @property
    def owned(self) -> list[int]:
        """Partitions this member owns now."""
        return sorted(self._partitions)

    def owns(self, partition: int) -> bool:
        """Whether this member owns ``partition`` now."""
        return partition in self._partitions

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self.topology.commands.name], listener=_Listener(self))

    @property
    def consumer(self) -> Any:
        """The aiokafka consumer (the log stops it when it closes)."""
        return self._consumer

    def assign(self, partitions: set[int]) -> None:
        for p in partitions:
            self._partitions[p] = _PartitionState()
        logger.info("sequencer %s now owns partitions %s", self.group_id, self.owned)
        self.joined.set()

    @contextlib.asynccontextmanager
    async def idle(self) -> AsyncIterator[None]:
        """Hold the sequencer between rounds (waiting, shielded, for the current round)."""
        acquired = False
        with anyio.move_on_after(_IDLE_TIMEOUT, shield=True):
            await self._lock.acquire()
            acquired = True
            await self._flush_commits()  # so the next owner need not answer them again
        if not acquired:
            logger.warning(
                "sequencer round still running after %.0f s; stopping it anyway", _IDLE_TIMEOUT
            )
        try:
            yield
        finally:
            if acquired:
                self._lock.release()

    async def revoke(self, partitions: set[int]) -> None:
        async with self._lock:  # let the round in progress finish and commit
            await self._flush_commits()
            for p in partitions:
                state = self._partitions.pop(p, None)
                self.feed.hand_back(p)  # its next writer is someone else
                if state is not None and self._on_released is not None:
                    self._on_released(p, state.decided_to)

    async def run(self) -> None:
        """Fetch and decide commands until cancelled."""
        consumer = self._consumer
        watch = StallWatch(consumer, "the sequencer")
        async with anyio.create_task_group() as committer:
            committer.start_soon(self._commit_in_background)
            while True:
                await watch.check()
                batch: dict[Any, list[Any]] = await consumer.getmany(
                    timeout_ms=200, max_records=_MAX_RECORDS
                )
                if not batch:
                    continue
                async with self._lock:
                    done: dict[Any, int] = {}
                    rounds = [
                        (tp, state, records)
                        for tp, records in batch.items()
                        if (state := self._partitions.get(tp.partition)) is not None and records
                    ]
                    ahead = await self._look_ahead(rounds)
                    async with anyio.create_task_group() as tg:
                        for tp, state, records in rounds:
                            tg.start_soon(self._round, tp, state, records, done, ahead.get(tp))
                    if done:
                        self._uncommitted.update(done)
                        self._commit_wanted.set()

    async def _commit_in_background(self) -> None:
        """Commit the offsets of finished rounds, one request at a time, while the next
        rounds are decided (their effects are durable already; see :meth:`_commit`)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted = anyio.Event()
            await self._flush_commits()

    async def _flush_commits(self) -> None:
        if self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            await self._commit(offsets)

    async def _commit(self, offsets: dict[Any, int]) -> None:
        """Commit finished rounds' command offsets (every partition's in one request).

        A failed commit loses nothing: those commands are decided again by whoever owns the
        partition next, and read as retries (their events are in the index).
        """
        try:
            # not cut short by a closing log: aiokafka would fail the request later with
            # nobody to see it
            with anyio.move_on_after(self.options.request_timeout * 2, shield=True):
                await self._consumer.commit(offsets)
        except Exception as exc:
            logger.warning(
                "committing the sequencer's offsets failed (%s); the next owner of partitions "
                "%s will answer those commands again as retries",
                describe(exc),
                sorted(tp.partition for tp in offsets),
            )

    async def _look_ahead(
        self, rounds: list[tuple[Any, _PartitionState, list[Any]]]
    ) -> dict[Any, _Ahead]:
        """The commands of this fetch's rounds on partitions that are ready, and what the
        index knows of them (thread versions, stored event ids), in one lookup for all:
        the rounds of one fetch run side by side, and a query per round cost more than
        its probes. If the lookup fails, each round looks up for itself (and fails as a
        round does)."""
        ahead: dict[Any, _Ahead] = {}
        threads: list[str] = []
        ids: list[str] = []
        for tp, state, records in rounds:
            if not state.ready:
                continue  # its round waits for the index first
            try:
                one = ahead[tp] = self._prepare(tp.partition, state, records)
            except Exception as exc:  # the round reads its records again, and fails as one
                logger.info("reading partition %d's commands ahead failed (%s)", tp.partition, exc)
                continue
            threads.extend(one.unknown)
            ids.extend(e.event_id for c in one.commands for e in c.events)
        if not ids:
            return ahead
        try:
            looked_up = await self._look_up(sorted(set(threads)), ids)
        except Exception as exc:
            logger.info("looking up %d commands ahead failed (%s)", len(ids), describe(exc))
            return ahead
        for one in ahead.values():
            one.versions, one.located = looked_up
        return ahead

    def _prepare(self, p: int, state: _PartitionState, records: list[Any]) -> _Ahead:
        """A round's commands (decoded, or taken from this process's log) and the threads
        it must look up; first forgets the produced events the index holds by now."""
        self._forget_indexed(p, state)
        commands = [c for record in records for c in self._commands(record)]
        unknown = {c.thread_id for c in commands} - state.versions.keys()
        n = self.topology.commands.partitions
        misplaced = {t for t in unknown if partition_of(t, n) != p}
        return _Ahead(commands, sorted(unknown - misplaced), misplaced)

    async def _look_up(self, threads: list[str], ids: list[str]) -> tuple[dict[str, int], Any]:
        """Thread versions and stored event ids: a few indexed queries, on the loop when
        the index is free (a hop to a worker thread per round cost more than the
        queries: 3.8k -> 5.2k appends/s measured)."""
        looked_up = self.index.call_if_free(self._lookup, threads, ids)
        if looked_up is None:
            looked_up = await anyio.to_thread.run_sync(self._lookup, threads, ids)
        return looked_up

    async def _round(
        self,
        tp: Any,
        state: _PartitionState,
        records: list[Any],
        done: dict[Any, int],
        ahead: _Ahead | None = None,
    ) -> None:
        try:
            await self._decide_and_write(tp, state, records, ahead)
            done[tp] = state.decided_to = records[-1].offset + 1
        except Exception as exc:
            # The round's effect is unknown: start over from the index at its first command.
            logger.error(
                "sequencer round on partition %d failed (%s); deciding its %d records again",
                tp.partition,
                describe(exc),
                len(records),
            )
            state.ready = False
            state.versions.clear()
            state.produced.clear()
            state.unindexed.clear()
            self.feed.hand_back(tp.partition)  # what landed, the consumer will find
            try:
                self._consumer.seek(tp, records[0].offset)
            except Exception as seek_exc:  # the partition moved away meanwhile
                logger.info("partition %d is no longer ours: %s", tp.partition, seek_exc)
            await anyio.sleep(self.options.retry.initial_delay)

    async def _decide_and_write(
        self, tp: Any, state: _PartitionState, records: list[Any], ahead: _Ahead | None
    ) -> None:
        p = tp.partition
        if ahead is None:
            if not state.ready:
                threads_tp = TopicPartition(self.topology.threads.name, p)
                ends = await self._consumer.end_offsets([threads_tp])
                # the index must get there; if the broker went away meanwhile, the round
                # fails
                with anyio.fail_after(self.options.request_timeout * 4):
                    await self.feed.wait_caught_up(p, ends[threads_tp])
                state.ready = True
                highwater = self._consumer.highwater(tp)  # of the fetch that brought these
                if self._on_deciding is not None and highwater is not None:
                    self._on_deciding(p, highwater)
            ahead = self._prepare(p, state, records)
        commands = ahead.commands
        if commands:
            outcomes = await self._write(p, state, ahead)
            self.answered.update(outcome.status for _, outcome in outcomes)
            if self._deliver is not None:
                for command, outcome in outcomes:
                    if command.reply_to == self._local:
                        self._deliver(outcome)
            await self._answer(p, outcomes)
        self.rounds += 1

    def _commands(self, record: Any) -> list[AppendCommand]:
        if header(record.headers, KIND) != KIND_APPEND:
            return []  # an outcome, or a record of another kind
        if self._take_local is not None and header(record.headers, REPLY_TO) == self._local_header:
            number = header(record.headers, BATCH)
            held = self._take_local(number) if number is not None else None
            if held is not None:
                self.handed_over += 1
                return held
        try:
            return decode_commands(record.value)
        except EventStoreError as exc:
            logger.error(
                "skipping unreadable command record at partition %d offset %d: %s",
                record.partition,
                record.offset,
                exc,
            )
            return []

    def _forget_indexed(self, p: int, state: _PartitionState) -> None:
        ingested = self.feed.next_offsets.get(p, 0)
        while state.unindexed and state.unindexed[0][0] < ingested:
            for event_id in state.unindexed.popleft()[1]:
                state.produced.pop(event_id, None)

    async def _write(
        self, p: int, state: _PartitionState, ahead: _Ahead
    ) -> list[tuple[AppendCommand, AppendOutcome]]:
        """Decide ``ahead.commands`` in order, write the accepted events, return the
        outcomes.

        Outcomes of accepted and duplicate commands are completed (offsets) once the
        events are acknowledged; until then only their status is known.
        """
        commands, unknown, misplaced = ahead.commands, ahead.unknown, ahead.misplaced
        if ahead.located is None:
            ids = [e.event_id for c in commands for e in c.events]
            ahead.versions, ahead.located = await self._look_up(unknown, ids)
        versions, located = ahead.versions, ahead.located
        # a lookup shared by several rounds holds the other partitions' threads and ids too
        state.versions.update((t, versions[t]) for t in unknown)
        batch = self.producer.create_batch()
        batch_ids: list[str] = []
        batch_values: list[bytes] = []
        answered: list[tuple[AppendCommand, AppendOutcome | Status]] = []
        threads_topic = self.topology.threads.name
        produced = state.produced
        prefix = self._prefix
        for command in commands:
            if command.thread_id in misplaced:
                answered.append((command, self._rejected(command, p, None, "", misplaced=True)))
                continue
            # plain loops: this runs for every command, and usually finds nothing
            event_ids = []
            seen: dict[str, StoredEvent] = {}
            bad_schema = None
            for prepared in command.events:
                event_id = prepared.event_id
                event_ids.append(event_id)
                if (s := produced.get(event_id)) is not None:
                    seen[event_id] = StoredEvent(s.thread_id, s.seq, s.offset)
                elif (loc := located.get(event_id)) is not None:
                    seen[event_id] = StoredEvent(loc.thread_id, loc.seq, loc.offset)
                if bad_schema is None and not prepared.head.startswith(prefix):
                    bad_schema = prepared
            if bad_schema is not None:
                answered.append((command, self._rejected(command, p, None, bad_schema.type)))
                continue
            current = state.versions.get(command.thread_id, 0)
            decision = decide(command.thread_id, current, command.expected_version, event_ids, seen)
            if isinstance(decision, Rejected):
                answered.append((command, self._rejected(command, p, decision.error, "")))
                continue
            if isinstance(decision, Accepted):
                key = command.thread_id.encode()
                for i, prepared in enumerate(command.events):
                    seq = decision.first_seq + i
                    value = prepared.head + encode_long(seq) + prepared.tail
                    headers = self._headers.get(prepared.type)
                    if headers is None:  # one list per event type, shared by its records
                        headers = self._headers[prepared.type] = [
                            ("type", prepared.type.encode()),
                            ("fingerprint", self._prefix[2:].hex().encode()),
                            CONTENT_TYPE,
                        ]
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        batch = await self._flush(
                            batch, p, threads_topic, state, batch_ids, batch_values
                        )
                        batch_ids, batch_values = [], []
                        if (
                            batch.append(key=key, value=value, timestamp=None, headers=headers)
                            is None
                        ):
                            raise EventStoreError(
                                f"event {prepared.event_id} does not fit an empty record batch "
                                f"of {self.options.max_batch_bytes} bytes"
                            )
                    state.produced[prepared.event_id] = _Produced(command.thread_id, seq)
                    batch_ids.append(prepared.event_id)
                    batch_values.append(value)
                state.versions[command.thread_id] = decision.version
                answered.append((command, "accepted"))
            else:
                answered.append((command, "duplicate"))
        if batch_ids:
            await self._flush(batch, p, threads_topic, state, batch_ids, batch_values)
        return [
            (c, self._placed(c, o, p, state, located) if isinstance(o, str) else o)
            for c, o in answered
        ]

    def _lookup(self, threads: list[str], ids: list[str]) -> tuple[dict[str, int], Any]:
        self.lookups += 1
        return self.index.versions(threads), self.index.find(ids)

    async def _flush(
        self,
        batch: Any,
        p: int,
        topic: str,
        state: _PartitionState,
        batch_ids: list[str],
        values: list[bytes],
    ) -> Any:
        """Write ``batch`` and wait for its acknowledgement; record the events' offsets and
        hand the records (``values``, in order) to the index feed (not waiting for their
        ingest, unless the feed's backlog is full)."""
        batch.close()

        async def send() -> Any:
            future = await self.producer.send_batch(batch, topic, partition=p)
            return await future

        metadata = await with_retry(
            self.options.retry, self.bootstrap, f"writing events to {topic}[{p}]", send
        )
        base = metadata.offset
        for i, event_id in enumerate(batch_ids):
            state.produced[event_id].offset = base + i
        state.unindexed.append((base + len(batch_ids) - 1, batch_ids))
        self.feed.hand_over(p, base, values)
        await self.feed.make_room()  # the rounds go on while the index ingests, but not far
        return self.producer.create_batch()

    def _placed(
        self,
        command: AppendCommand,
        status: Status,
        p: int,
        state: _PartitionState,
        located: Any,
    ) -> AppendOutcome:
        """The outcome of an accepted or duplicate command, its events' offsets known."""
        offsets: list[int] = []
        seqs: list[int] = []
        for prepared in command.events:
            produced = state.produced.get(prepared.event_id)
            if produced is not None and produced.offset >= 0:
                offsets.append(produced.offset)
                seqs.append(produced.seq)
            else:
                loc = located[prepared.event_id]
                offsets.append(loc.offset)
                seqs.append(loc.seq)
        return AppendOutcome(
            command.command_id,
            command.thread_id,
            status,
            p,
            tuple(offsets),
            seqs[0],
            state.versions.get(command.thread_id, 0),
        )

    def _rejected(
        self,
        command: AppendCommand,
        p: int,
        error: EventStoreError | None,
        bad_type: str,
        *,
        misplaced: bool = False,
    ) -> AppendOutcome:
        current = self._current(command)
        if misplaced:
            rejected = CommandRejected(
                command_id=command.command_id,
                code=WRONG_PARTITION,
                reason=(
                    f"thread {command.thread_id!r} belongs to partition "
                    f"{partition_of(command.thread_id, self.topology.commands.partitions)}, "
                    f"not {p}: send commands to the partition Kafka's murmur2 partitioner "
                    "gives the thread id"
                ),
                expected_version=command.expected_version,
                current_version=None,
            )
            conflict = None
        elif isinstance(error, WrongExpectedVersion):
            rejected = CommandRejected(
                command_id=command.command_id,
                code=WRONG_EXPECTED_VERSION,
                reason=str(error),
                expected_version=error.expected,
                current_version=error.current,
            )
            conflict = None
        elif isinstance(error, IdempotencyConflict):
            rejected = CommandRejected(
                command_id=command.command_id,
                code=IDEMPOTENCY_CONFLICT,
                reason=error.detail,
                expected_version=command.expected_version,
                current_version=current,
            )
            conflict = error.event_id
        else:
            rejected = CommandRejected(
                command_id=command.command_id,
                code=UNKNOWN_SCHEMA,
                reason=(
                    f"a {bad_type} event is encoded with a schema this sequencer does not "
                    "write (upgrade the sequencer before the clients)"
                ),
                expected_version=command.expected_version,
                current_version=current,
            )
            conflict = None
        return AppendOutcome(
            command.command_id,
            command.thread_id,
            "rejected",
            p,
            version=current,
            conflict_event_id=conflict,
            rejected=rejected,
        )

    def _current(self, command: AppendCommand) -> int:
        for state in self._partitions.values():
            if command.thread_id in state.versions:
                return state.versions[command.thread_id]
        return 0

    async def _answer(self, p: int, outcomes: list[tuple[AppendCommand, AppendOutcome]]) -> None:
        """Write the outcomes to the commands topic, one record per client, and wait for
        the acknowledgement."""
        topic = self.topology.commands.name
        by_client: dict[str, list[AppendOutcome]] = {}
        for command, outcome in outcomes:
            if command.reply_to == self._local and outcome.status != "rejected":
                continue  # handed over in process; the events themselves are the record
            by_client.setdefault(command.reply_to, []).append(outcome)
        if not by_client:
            return
        batch = self.producer.create_batch()
        for reply_to, answers in by_client.items():
            headers = [(KIND, KIND_OUTCOME), (REPLY_TO, reply_to.encode()), CONTENT_TYPE]
            for value in self._outcome_records(answers):
                if batch.append(key=None, value=value, timestamp=None, headers=headers) is None:
                    await self._send_outcomes(batch, topic, p)
                    batch = self.producer.create_batch()
                    batch.append(key=None, value=value, timestamp=None, headers=headers)
        await self._send_outcomes(batch, topic, p)

    def _outcome_records(self, outcomes: list[AppendOutcome]) -> list[bytes]:
        """``outcomes`` as outcome batch records, split until each fits a record batch."""
        value = encode_outcomes(outcomes)
        if len(value) <= self.options.max_batch_bytes // 2 or len(outcomes) == 1:
            return [value]
        half = len(outcomes) // 2
        return self._outcome_records(outcomes[:half]) + self._outcome_records(outcomes[half:])

    async def _send_outcomes(self, batch: Any, topic: str, p: int) -> None:
        batch.close()

        async def send() -> Any:
            future = await self.producer.send_batch(batch, topic, partition=p)
            return await future

        await with_retry(self.options.retry, self.bootstrap, f"answering on {topic}[{p}]", send)
