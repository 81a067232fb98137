"""Benchmark of the embedded event log against a raw SQLite loop and the eventsourcing library.

Run from the project root::

    PYTHONPATH=. .venv/bin/python bench/eventlog.py            # full run, about 2 minutes
    PYTHONPATH=. .venv/bin/python bench/eventlog.py --quick    # smoke run, about 20 seconds

stdout gets only parseable lines: ``NAME: VALUE UNIT`` for each measured figure and
``ratio NAME: VALUE (goal >= GOAL)`` for each comparison (higher is better). Progress goes
to stderr. See ``bench/README.md`` for what each figure means.

Workloads:

* W1, the agent pattern: 64 concurrent appenders (anyio tasks), each appending one event
  at a time to the threads it owns, once with ``fsync=False`` and once with ``fsync=True``.
  Baseline: one synchronous loop that encodes the same events with fastavro and inserts
  them into ``events(thread_id TEXT, seq INTEGER, body BLOB, PRIMARY KEY(thread_id, seq))``
  in transactions of 500 rows (WAL, ``synchronous=NORMAL`` or ``FULL``).
* W2: reading one 1000-event thread (decoded) from the W1 log, many times; baseline:
  ``SELECT body ... WHERE thread_id = ? ORDER BY seq`` plus fastavro decoding of each body.
* Peer: eventsourcing 9.x on its SQLite persistence, run synchronously in one thread:
  one ``app.save`` per event (W1) and ``app.repository.get`` of a 1000-event aggregate (W2).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import heapq
import io
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import anyio
import fastavro
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteApplicationRecorder
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from eventstore import Codec, EmbeddedEventLog, NewEvent, uuid7
from eventstore.codec import HEADER_SIZE, MAGIC
from eventstore.payloads import MemorySet, Message, Part, to_avro

CONCURRENCY = 64
LONG_THREAD = "thread-long"
LONG_EVENTS = 1000
BATCH_ROWS = 500
ACTORS = ("planner", "researcher", "coder", "reviewer")
WORDS = (
    "the agent planner tool call result search query answer code test file review summary"
    " user task plan step context memory value update thread message reply check data"
    " model output input error retry document source citation draft final budget latency"
    " cache index schema event version vector merge conflict resolve branch"
).split()

Stream = list[tuple[str, NewEvent]]

err = Console(stderr=True)


# --- output ----------------------------------------------------------------------------


def figure(name: str, value: float, unit: str, digits: int = 0) -> None:
    """Print one measured figure as ``NAME: VALUE UNIT``."""
    print(f"{name}: {value:.{digits}f} {unit}".rstrip(), flush=True)


def ratio(name: str, value: float, goal: float) -> None:
    """Print one comparison as ``ratio NAME: VALUE (goal >= GOAL)``."""
    print(f"ratio {name}: {value:.2f} (goal >= {goal:g})", flush=True)


def note(text: str) -> None:
    """Print a comment line (starts with ``#``) on stdout."""
    print(f"# {text}", flush=True)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``set_completed(n)``."""
    with Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        auto_refresh=False,  # no refresh thread competing for the GIL with the workload
    ) as progress:
        task: TaskID = progress.add_task(label, total=total)

        def update(n: int) -> None:
            progress.update(task, completed=n)
            progress.refresh()

        yield update


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- workload ----------------------------------------------------------------------------


def _text(rng: random.Random, length: int) -> str:
    words: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length].capitalize()


@dataclasses.dataclass
class Workload:
    """Pre-built events: ``base`` spread over the threads, ``long`` for one long thread."""

    base: Stream
    long: Stream

    def stream(self, n: int) -> Stream:
        """The first ``n`` base events with the 1000 long-thread events spread evenly."""
        base = self.base[:n]
        out: Stream = []
        step = max(1, len(base) // len(self.long))
        it = iter(self.long)
        for i, item in enumerate(base):
            if i % step == 0:
                nxt = next(it, None)
                if nxt is not None:
                    out.append(nxt)
            out.append(item)
        out.extend(it)
        return out


def make_workload(n_events: int, n_threads: int, seed: int = 42) -> Workload:
    """Build ``n_events`` events over ``n_threads`` threads plus the long thread.

    About 80% are ``a2a.Message`` with one ~400-character text part, the rest
    ``memory.Set`` with a ~300-character JSON value; each carries a version vector that
    counts its thread's events per actor, and a correlation or causation id.
    """
    rng = random.Random(seed)
    texts = [_text(rng, rng.randint(380, 420)) for _ in range(512)]
    notes = [_text(rng, rng.randint(280, 320)) for _ in range(256)]
    keys = ["plan.current_step", "user.preferences", "search.results", "draft.outline"]
    vectors: dict[str, dict[str, int]] = {}
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def one(thread_id: str, i: int) -> tuple[str, NewEvent]:
        actor = rng.choice(ACTORS)
        vv = vectors.setdefault(thread_id, {})
        vv[actor] = vv.get(actor, 0) + 1
        if rng.random() < 0.8:
            payload: Message | MemorySet = Message(
                message_id=uuid7(),
                role="user" if actor == "planner" and rng.random() < 0.3 else "agent",
                parts=(Part(text=rng.choice(texts)),),
                context_id=thread_id,
            )
            ids = {"correlation_id": uuid7()}
        else:
            value = {"step": i % 17, "notes": rng.choice(notes), "done": [1, 2, 3]}
            payload = MemorySet(key=rng.choice(keys), value_json=json.dumps(value))
            ids = {"causation_id": uuid7()}
        return thread_id, NewEvent(
            payload=payload,
            event_id=uuid7(),
            occurred_at=start + timedelta(milliseconds=i),
            actor=actor,
            version_vector=dict(vv),
            **ids,
        )

    base = [one(f"thread-{rng.randrange(n_threads):04d}", i) for i in range(n_events)]
    long = [one(LONG_THREAD, i) for i in range(LONG_EVENTS)]
    return Workload(base, long)


def split_among(stream: Stream, appenders: int) -> list[Stream]:
    """Give each thread of ``stream`` to one of ``appenders``, so that they all have about
    as many events to append; each appender's events keep the stream's order.

    Threads go to the least loaded appender, longest first. Handing them out in turn
    gave the owner of the 1000-event thread a third more events than the others, so the
    run ended with that appender alone, one event per commit: not the concurrent workload
    being measured.
    """
    sizes: dict[str, int] = {}
    for thread_id, _ in stream:
        sizes[thread_id] = sizes.get(thread_id, 0) + 1
    loads = [(0, i) for i in range(appenders)]
    owner: dict[str, int] = {}
    for thread_id in sorted(sizes, key=lambda t: (-sizes[t], t)):
        load, i = heapq.heappop(loads)
        owner[thread_id] = i
        heapq.heappush(loads, (load + sizes[thread_id], i))
    queues: list[Stream] = [[] for _ in range(appenders)]
    for item in stream:
        queues[owner[item[0]]].append(item)
    return queues


# --- agentlog ----------------------------------------------------------------------------


async def agentlog_w1(
    path: Path,
    stream: Stream,
    fsync: bool,
    label: str,
    on_open: Callable[[EmbeddedEventLog], None] | None = None,
) -> tuple[float, list[float]]:
    """Append ``stream`` with 64 concurrent appenders; return (seconds, append latencies).

    ``on_open`` is called with the opened log before the clock starts (the profiler uses
    it to instrument the log).
    """
    queues = split_among(stream, CONCURRENCY)
    latencies: list[float] = []
    done = 0

    async def appender(items: list[tuple[str, NewEvent]]) -> None:
        nonlocal done
        clock = time.perf_counter
        for thread_id, new in items:
            t0 = clock()
            await log.append(thread_id, [new])
            latencies.append(clock() - t0)
            done += 1

    async with EmbeddedEventLog(path, fsync=fsync) as log:
        if on_open is not None:
            on_open(log)
        with progress_bar(label, len(stream)) as update:
            t0 = time.perf_counter()

            async def ticker() -> None:
                while True:
                    update(done)
                    await anyio.sleep(0.25)

            async with anyio.create_task_group() as outer:
                outer.start_soon(ticker)
                async with anyio.create_task_group() as tg:
                    for items in queues:
                        tg.start_soon(appender, items)
                outer.cancel_scope.cancel()
            seconds = time.perf_counter() - t0
        head = await log.head()
    if head != len(stream):
        raise RuntimeError(f"agentlog stored {head} events, expected {len(stream)}")
    return seconds, latencies


async def w2_interleaved(
    ours_path: Path,
    readers: dict[str, Callable[[], int]],
    reps: int,
    every: dict[str, int],
) -> dict[str, list[float]]:
    """Time reads of the long thread: agentlog's ``read_thread`` and each of ``readers``.

    The contenders take turns, rep after rep (the order alternates), so that drift in the
    machine's load hits them alike. ``readers`` are synchronous callables returning how many
    events they decoded; ``every[name] = k`` runs that reader only every k-th rep. Each
    contender first reads 5 times untimed.

    Returns:
        Latencies in seconds per contender; agentlog's under ``"agentlog"``.
    """
    times: dict[str, list[float]] = {"agentlog": [], **{name: [] for name in readers}}
    clock = time.perf_counter
    async with EmbeddedEventLog(ours_path) as log:

        async def ours() -> int:
            return len(await log.read_thread(LONG_THREAD))

        for name, read in readers.items():
            for _ in range(5):
                if (n := read()) != LONG_EVENTS:
                    raise RuntimeError(f"{name} read {n} events of the long thread")
        for _ in range(5):
            if (n := await ours()) != LONG_EVENTS:
                raise RuntimeError(f"agentlog read {n} events of the long thread")
        with progress_bar("W2 reads (interleaved)", reps) as update:
            for rep in range(reps):
                order = list(readers.items())
                if rep % 2:
                    order.reverse()
                t0 = clock()
                await ours()
                times["agentlog"].append(clock() - t0)
                for name, read in order:
                    if rep % every.get(name, 1) == 0:
                        t0 = clock()
                        read()
                        times[name].append(clock() - t0)
                update(rep + 1)
    return times


# --- raw baseline ------------------------------------------------------------------------


class Raw:
    """fastavro + sqlite3 with nothing in between: the floor agentlog is compared to."""

    DDL = (
        "CREATE TABLE events (thread_id TEXT, seq INTEGER, body BLOB, PRIMARY KEY (thread_id, seq))"
    )

    def __init__(self, codec: Codec) -> None:
        self.parsed = codec._parsed
        self.header = MAGIC + codec.fingerprint

    def encode(self, thread_id: str, seq: int, e: NewEvent) -> bytes:
        """Single-object encoding of ``e`` as the ``seq``-th event of ``thread_id``."""
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(
            buf,
            self.parsed,
            {
                "event_id": e.event_id,
                "thread_id": thread_id,
                "tenant": e.tenant,
                "seq": seq,
                "type": e.payload.TYPE,
                "occurred_at": e.occurred_at,
                "actor": e.actor,
                "version_vector": e.version_vector,
                "causation_id": e.causation_id,
                "correlation_id": e.correlation_id,
                "idempotency_key": e.idempotency_key,
                "payload": to_avro(e.payload),
            },
        )
        return buf.getvalue()

    def connect(self, path: Path, synchronous: str) -> sqlite3.Connection:
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute(f"PRAGMA synchronous = {synchronous}")
        con.execute("PRAGMA cache_size = -262144")  # the same page cache agentlog uses (256 MiB)
        return con

    def write(self, path: Path, stream: Stream, synchronous: str, label: str) -> float:
        """Encode and insert ``stream`` in transactions of 500 rows; return seconds."""
        con = self.connect(path, synchronous)
        con.execute(self.DDL)
        seqs: dict[str, int] = {}
        rows: list[tuple[str, int, bytes]] = []
        encode = self.encode
        insert = "INSERT INTO events (thread_id, seq, body) VALUES (?, ?, ?)"
        with progress_bar(label, len(stream)) as update:
            t0 = time.perf_counter()
            for i, (thread_id, event) in enumerate(stream, 1):
                seq = seqs.get(thread_id, 0) + 1
                seqs[thread_id] = seq
                rows.append((thread_id, seq, encode(thread_id, seq, event)))
                if len(rows) == BATCH_ROWS or i == len(stream):
                    con.execute("BEGIN")
                    con.executemany(insert, rows)
                    con.execute("COMMIT")
                    rows.clear()
                    if i % 10_000 < BATCH_ROWS:
                        update(i)
            seconds = time.perf_counter() - t0
        count = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
        if count != len(stream):
            raise RuntimeError(f"baseline stored {count} rows, expected {len(stream)}")
        return seconds

    def reader(self, path: Path) -> tuple[Callable[[], int], sqlite3.Connection]:
        """A function that selects and decodes the long thread; and its connection."""
        con = self.connect(path, "NORMAL")
        parsed = self.parsed
        read = fastavro.schemaless_reader
        query = "SELECT body FROM events WHERE thread_id = ? ORDER BY seq"

        def once() -> int:
            out = []
            for (body,) in con.execute(query, (LONG_THREAD,)):
                buf = io.BytesIO(body)
                buf.seek(HEADER_SIZE)
                out.append(read(buf, parsed, None))
            return len(out)

        return once, con


# --- peer: eventsourcing -----------------------------------------------------------------


class ChatThread(Aggregate):
    """One conversation thread; one domain event per message or memory write."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.messages = 0
        self.memory: dict[str, str] = {}

    @event("MessageAppended")
    def append_message(
        self,
        message_id: str,
        role: str,
        text: str,
        context_id: str | None,
        actor: str,
        version_vector: dict[str, int],
        correlation_id: str | None,
    ) -> None:
        self.messages += 1

    @event("MemorySet")
    def set_memory(
        self,
        key: str,
        value_json: str,
        actor: str,
        version_vector: dict[str, int],
        causation_id: str | None,
    ) -> None:
        self.memory[key] = value_json


class ChatApp(Application[UUID]):
    """An application with nothing but its repository (no snapshots, no cache)."""


def peer_app(path: Path, synchronous: str) -> Any:
    """An eventsourcing application on SQLite ``path`` with ``PRAGMA synchronous``.

    eventsourcing opens its connections with SQLite's default ``synchronous`` (FULL); the
    bench sets it on each connection its pool creates, so both durability levels can be
    compared like for like.
    """
    app = ChatApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    pool = cast(SQLiteApplicationRecorder, app.recorder).datastore.pool
    create = pool._create_connection

    def create_with_pragma() -> Any:
        conn = create()
        conn._sqlite_conn.execute(f"PRAGMA synchronous = {synchronous}")
        return conn

    pool._create_connection = create_with_pragma  # type: ignore[method-assign]
    for conn in list(pool._pool):
        conn._sqlite_conn.execute(f"PRAGMA synchronous = {synchronous}")
    return app


def peer_w1(path: Path, stream: Stream, synchronous: str, label: str) -> tuple[float, Any, Any]:
    """Save one event at a time, single-threaded; return (seconds, app, long aggregate id)."""
    app = peer_app(path, synchronous)
    aggregates = {tid: ChatThread(tid) for tid in dict.fromkeys(t for t, _ in stream)}
    app.save(*aggregates.values())  # creation events: setup, not timed
    datastore = cast(SQLiteApplicationRecorder, app.recorder).datastore
    with datastore.get_connection(commit=True) as conn:
        level = conn._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0]
    if level != {"NORMAL": 1, "FULL": 2}[synchronous]:
        raise RuntimeError(f"peer connection has synchronous={level}, wanted {synchronous}")
    with progress_bar(label, len(stream)) as update:
        t0 = time.perf_counter()
        for i, (thread_id, e) in enumerate(stream, 1):
            agg = aggregates[thread_id]
            p = e.payload
            if isinstance(p, Message):
                agg.append_message(
                    p.message_id,
                    p.role,
                    p.parts[0].text or "",
                    p.context_id,
                    e.actor,
                    dict(e.version_vector),
                    e.correlation_id,
                )
            else:
                assert isinstance(p, MemorySet)
                agg.set_memory(p.key, p.value_json, e.actor, dict(e.version_vector), e.causation_id)
            app.save(agg)
            if i % 1000 == 0:
                update(i)
        seconds = time.perf_counter() - t0
    return seconds, app, aggregates[LONG_THREAD].id


def peer_reader(app: Any, aggregate_id: Any) -> Callable[[], int]:
    """A function that reconstructs the long aggregate; returns how many events it folded."""

    def once() -> int:
        agg = app.repository.get(aggregate_id)
        return int(agg.version) - 1  # less the creation event

    return once


def peer_state_bytes(path: Path) -> float:
    """Mean size of the peer's stored event state (JSON) in bytes."""
    con = sqlite3.connect(path)
    try:
        return float(con.execute("SELECT avg(length(state)) FROM stored_events").fetchone()[0])
    finally:
        con.close()


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="W1 events (fsync=False)")
    parser.add_argument("--threads", type=int, default=1000, help="threads the events spread over")
    parser.add_argument(
        "--fsync-events", type=int, default=None, help="W1 events, fsync=True (default: --events)"
    )
    parser.add_argument(
        "--peer-events", type=int, default=None, help="events for the peer (default: --events)"
    )
    parser.add_argument("--reads", type=int, default=300, help="W2 reads (agentlog, baseline)")
    parser.add_argument("--peer-reads", type=int, default=60, help="W2 reads (peer, about)")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    parser.add_argument("--skip-peer", action="store_true", help="leave out eventsourcing")
    args = parser.parse_args()
    if args.quick:
        args.events, args.fsync_events, args.peer_events = 20_000, 5_000, 5_000
        args.reads, args.peer_reads = 50, 10
    args.fsync_events = min(args.fsync_events or args.events, args.events)
    args.peer_events = min(args.peer_events or args.events, args.events)

    print(f"# agentlog event log benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"# machine: nproc={os.cpu_count()} {platform.machine()} {platform.system()} "
        f"{platform.release()}"
    )
    print(
        f"# python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"fastavro {fastavro.__version__}, anyio {metadata.version('anyio')}, "
        f"eventsourcing {metadata.version('eventsourcing')}"
    )
    print(
        f"# W1: {args.events} events over {args.threads} threads + {LONG_EVENTS} in "
        f"{LONG_THREAD!r}; {CONCURRENCY} concurrent appenders, one event per append, "
        f"expected_version=None"
    )
    print(f"# baseline table: {Raw.DDL}; {BATCH_ROWS} rows per transaction, WAL", flush=True)

    t_start = time.perf_counter()
    with err.status("building the workload"):
        work = make_workload(args.events, args.threads)
    # The pre-built events live for the whole run; keep the collector from rescanning them.
    gc.collect()
    gc.freeze()

    codec = Codec()
    raw = Raw(codec)
    stream = work.stream(args.events)
    for thread_id, e in stream[:50]:
        assert raw.encode(thread_id, 3, e) == codec.encode(thread_id, 3, e), "encodings differ"
    sizes = [len(codec.encode(t, 1, e)) for t, e in stream[:5000]]
    figure("event size mean", statistics.fmean(sizes), "bytes")
    n_msg = sum(isinstance(e.payload, Message) for _, e in stream)
    figure("event mix a2a.Message", 100 * n_msg / len(stream), "%")

    ratios: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-") as tmp:
        d = Path(tmp)

        # W1, process durability
        secs, lat = anyio.run(agentlog_w1, d / "ours.db", stream, False, "W1 agentlog fsync=False")
        ours_rate = len(stream) / secs
        figure("W1 events fsync=False", len(stream), "events")
        figure("W1 agentlog fsync=False", ours_rate, "events/s")
        figure("W1 agentlog fsync=False append p50", 1e3 * percentile(lat, 0.5), "ms", 2)
        figure("W1 agentlog fsync=False append p99", 1e3 * percentile(lat, 0.99), "ms", 2)
        del lat
        secs = raw.write(d / "raw.db", stream, "NORMAL", "W1 baseline NORMAL")
        raw_rate = len(stream) / secs
        figure("W1 baseline synchronous=NORMAL", raw_rate, "events/s")
        ratios.append(("W1", ours_rate / raw_rate, 0.5))

        # W1, power-loss durability
        fstream = work.stream(args.fsync_events)
        secs, lat = anyio.run(
            agentlog_w1, d / "ours-fsync.db", fstream, True, "W1 agentlog fsync=True"
        )
        ours_fsync_rate = len(fstream) / secs
        figure("W1 events fsync=True", len(fstream), "events")
        figure("W1 agentlog fsync=True", ours_fsync_rate, "events/s")
        figure("W1 agentlog fsync=True append p50", 1e3 * percentile(lat, 0.5), "ms", 2)
        figure("W1 agentlog fsync=True append p99", 1e3 * percentile(lat, 0.99), "ms", 2)
        del lat
        secs = raw.write(d / "raw-full.db", fstream, "FULL", "W1 baseline FULL")
        raw_full_rate = len(fstream) / secs
        figure("W1 baseline synchronous=FULL", raw_full_rate, "events/s")
        ratios.append(("W1 fsync", ours_fsync_rate / raw_full_rate, 0.5))
        drop(d, "ours-fsync.db", "raw-full.db")

        # Peer W1 (its NORMAL app stays open for W2)
        app: Any = None
        if not args.skip_peer:
            pstream = work.stream(args.peer_events)
            note(
                "peer: eventsourcing on SQLite, single-threaded and synchronous, one "
                "app.save per event"
            )
            figure("W1 peer events", len(pstream), "events")
            secs, app_full, _ = peer_w1(d / "peer-full.db", pstream, "FULL", "W1 peer FULL")
            app_full.close()
            drop(d, "peer-full.db")
            peer_full_rate = len(pstream) / secs
            secs, app, long_id = peer_w1(d / "peer.db", pstream, "NORMAL", "W1 peer NORMAL")
            peer_rate = len(pstream) / secs
            figure("W1 peer synchronous=NORMAL", peer_rate, "events/s")
            figure("W1 peer synchronous=FULL", peer_full_rate, "events/s")
            figure("peer event size mean", peer_state_bytes(d / "peer.db"), "bytes")
            # The peer as it ships ("eventsourcing with its SQLite persistence"): a sync per
            # save. Against it: agentlog as it ships, and agentlog syncing each group too.
            ratios.append(("peer W1", ours_rate / peer_full_rate, 5))
            ratios.append(("peer W1 fsync", ours_fsync_rate / peer_full_rate, 5))
            # Both surviving a crash of the process only: the peer set to NORMAL by this
            # bench. Shown, not held to 5x (see bench/README.md: out of reach by design).
            figure(
                "W1 agentlog fsync=False / peer synchronous=NORMAL", ours_rate / peer_rate, "x", 2
            )

        # W2, all contenders taking turns
        raw_read, raw_con = raw.reader(d / "raw.db")
        readers = {"baseline": raw_read}
        every = {}
        if app is not None:
            readers["peer"] = peer_reader(app, long_id)
            every["peer"] = max(1, args.reads // args.peer_reads)
        times = anyio.run(w2_interleaved, d / "ours.db", readers, args.reads, every)
        raw_con.close()
        if app is not None:
            app.close()
        ours_p50 = percentile(times["agentlog"], 0.5)
        figure("W2 reads agentlog", len(times["agentlog"]), "reads")
        figure("W2 agentlog read_thread p50", 1e3 * ours_p50, "ms", 2)
        figure("W2 agentlog read_thread p90", 1e3 * percentile(times["agentlog"], 0.9), "ms", 2)
        raw_p50 = percentile(times["baseline"], 0.5)
        figure("W2 baseline select+decode p50", 1e3 * raw_p50, "ms", 2)
        figure("W2 baseline select+decode p90", 1e3 * percentile(times["baseline"], 0.9), "ms", 2)
        ratios.append(("W2", raw_p50 / ours_p50, 0.7))
        if app is not None:
            peer_p50 = percentile(times["peer"], 0.5)
            figure("W2 reads peer", len(times["peer"]), "reads")
            figure("W2 peer repository.get p50", 1e3 * peer_p50, "ms", 2)
            figure("W2 peer repository.get p90", 1e3 * percentile(times["peer"], 0.9), "ms", 2)
            ratios.append(("peer W2", peer_p50 / ours_p50, 1.5))

    figure("total wall time", time.perf_counter() - t_start, "s", 1)
    order = ["W1", "W1 fsync", "W2", "peer W1", "peer W1 fsync", "peer W2"]
    for name, value, goal in sorted(ratios, key=lambda r: order.index(r[0])):
        ratio(name, value, goal)


def drop(d: Path, *names: str) -> None:
    """Delete SQLite files (with their -wal and -shm) no longer needed, to save disk."""
    for name in names:
        for suffix in ("", "-wal", "-shm"):
            (d / (name + suffix)).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
