"""Benchmark of projections: full rebuild, ``state_at`` on a long thread, and the peer.

Run from the project root::

    PYTHONPATH=. .venv/bin/python bench/projections.py            # full run, about 2-2.5 minutes
    PYTHONPATH=. .venv/bin/python bench/projections.py --quick    # smoke run, 10-20 seconds

stdout gets only parseable lines: ``NAME: VALUE UNIT`` for each measured figure and
``ratio NAME: VALUE (goal >= GOAL)`` for each comparison (higher is better). Progress goes
to stderr. See ``bench/README.md`` for what each figure means.

Workloads (all in one run, so the machine's load hits every contender alike):

* Rebuild: a log of agent events (default 100 000 over 500 threads: A2A messages, task
  status updates and artifacts, memory writes with version vectors, routing decisions,
  LLM completions). ``rebuild(reader)`` with a ``SqliteSnapshotStore`` and a snapshot every
  100 events, against the raw decode loop: ``log.read_all`` in pages of 1000, which decodes
  every event and does nothing else.
* state_at: one thread of 10 000 events of the same mix, in a log of its own where it is
  interleaved with as many events of 100 other threads; snapshots pre-built by a rebuild.
  ``reader.state_at(thread, seq=k)`` at random ``k``, with snapshots and without.
* Peer: eventsourcing 9.x on its SQLite persistence with snapshots every 100 versions:
  ``app.repository.get(id, version=k + 1)`` of an aggregate holding the same 10 000 events.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import fastavro

# The benchmark module next to this file: output helpers, actors and vocabulary.
from eventlog import ACTORS, WORDS, err, figure, note, percentile, progress_bar, ratio
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from eventstore import Codec, EmbeddedEventLog, NewEvent, uuid7
from eventstore.payloads import (
    Artifact,
    Candidate,
    LlmCompleted,
    MemorySet,
    Message,
    Part,
    Payload,
    RoutingDecided,
    TaskStatusUpdate,
)
from projections import (
    CountingObserver,
    MergeRules,
    SqliteSnapshotStore,
    StateReader,
    ThreadState,
    fold,
    rebuild,
)
from projections.serial import encode

SNAPSHOT_EVERY = 100
PAGE = 1000
"""Events per ``read_all`` page in the raw decode loop."""
FILL_WINDOW = 512
"""Events of the stream appended together (one append per thread in the window)."""
LONG_THREAD = "thread-long"
FILLER_THREADS = 100

MIX: tuple[tuple[str, float], ...] = (
    ("a2a.Message", 0.20),
    ("a2a.TaskStatusUpdate", 0.20),
    ("memory.Set", 0.40),
    ("a2a.Artifact", 0.05),
    ("routing.Decided", 0.05),
    ("llm.Completed", 0.10),
)
COUNTER_KEYS = ("stats.tokens", "stats.tool_calls")
MAP_KEYS = ("profile.user", "profile.project")
MANUAL_KEYS = ("decision.plan", "decision.model")
LWW_KEYS = (
    "plan.current_step",
    "plan.steps",
    "user.preferences",
    "search.results",
    "search.query",
    "draft.outline",
    "draft.sections",
    "context.summary",
    "tool.last_result",
    "code.files",
    "review.comments",
    "budget.remaining",
    "citations",
    "errors.recent",
)
KEYS = COUNTER_KEYS + MAP_KEYS + MANUAL_KEYS + LWW_KEYS
RULES = {"stats.*": "merge", "profile.*": "merge", "decision.*": "manual"}
"""Merge rules of the run; keys no rule names are last-write-wins."""
CONCURRENT = 0.15
"""Share of memory writes that race a second actor writing the same key from the same read."""

PHASES = {
    "version": "log.version: only when the point is past the end (SQL, thread hop)",
    "latest": "store.latest: the snapshot row, unless a decoded one is cached (SQL, blob)",
    "load_chunks": "store.load_chunks: snapshot chunks not in the reader's cache (SQL)",
    "read_thread": "log.read_thread: the tail after the snapshot (SQL, Avro decode)",
    "decode": "the rest, on the event loop: decoding the snapshot (zstd, pydantic)",
    "fold": "fold of the tail onto the snapshot's state, timed on its own",
}
"""The steps of ``state_at`` with snapshots that the breakdown reports, in order."""

Stream = list[tuple[str, NewEvent]]


# --- workload ----------------------------------------------------------------------------


def phrase(rng: random.Random, length: int) -> str:
    """Words of the bench vocabulary, ``length`` characters."""
    return " ".join(rng.choices(WORDS, k=length // 5 + 8))[:length].capitalize()


@dataclasses.dataclass
class ThreadGen:
    """What the generator remembers of one thread, so its events make sense together."""

    thread_id: str
    actors: tuple[str, ...]
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    key_vectors: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    own: dict[str, int] = dataclasses.field(default_factory=dict)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    maps: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    open_tasks: list[str] = dataclasses.field(default_factory=list)
    task_states: dict[str, str] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, str] = dataclasses.field(default_factory=dict)
    pending: tuple[str, MemorySet, dict[str, int]] | None = None


class Generator:
    """Builds agent events from a fixed seed (ids are fresh UUIDv7s, sizes are fixed)."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        sizes = {380: 4096, 260: 2048, 300: 1024, 160: 1024, 60: 1024}
        self.pools = {n: [phrase(rng, n) for _ in range(count)] for n, count in sizes.items()}
        self.types = [t for t, _ in MIX]
        self.weights = [w for _, w in MIX]
        self.start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
        self.threads: dict[str, ThreadGen] = {}

    def text(self, length: int) -> str:
        return self.rng.choice(self.pools[length])

    def thread(self, thread_id: str) -> ThreadGen:
        gen = self.threads.get(thread_id)
        if gen is None:
            # The planner and two workers share the thread's context.
            workers = tuple(self.rng.sample(ACTORS[1:], 2))
            gen = self.threads[thread_id] = ThreadGen(thread_id, (ACTORS[0], *workers))
        return gen

    def event(self, thread_id: str, i: int) -> NewEvent:
        """The thread's next event, the ``i``-th of the stream (its time: start + i ms)."""
        rng = self.rng
        g = self.thread(thread_id)
        kind = rng.choices(self.types, self.weights)[0]
        actor = rng.choice(g.actors)
        ids = {"causation_id": uuid7()}
        payload: Payload
        if kind == "memory.Set":
            actor, payload, vector = self.memory(g, actor)
        else:
            g.counts[actor] = g.counts.get(actor, 0) + 1
            vector = dict(g.counts)
            if kind == "a2a.Message":
                payload = self.message(g, actor)
                ids = {"correlation_id": uuid7()}
            elif kind == "a2a.TaskStatusUpdate":
                payload = self.status(g)
            elif kind == "a2a.Artifact":
                payload = self.artifact(g)
            elif kind == "routing.Decided":
                payload = self.routing(g)
            else:
                payload = self.llm()
        return NewEvent(
            payload=payload,
            event_id=uuid7(),
            occurred_at=self.start + timedelta(milliseconds=i),
            actor=actor,
            version_vector=vector,
            **ids,
        )

    def message(self, g: ThreadGen, actor: str) -> Message:
        rng = self.rng
        task = rng.choice(g.open_tasks) if g.open_tasks and rng.random() < 0.6 else None
        return Message(
            message_id=uuid7(),
            role="user" if actor == ACTORS[0] and rng.random() < 0.5 else "agent",
            parts=(Part(text=self.text(380)),),
            task_id=task,
            context_id=g.thread_id,
        )

    def status(self, g: ThreadGen) -> TaskStatusUpdate:
        rng = self.rng
        if not g.open_tasks or (len(g.open_tasks) < 5 and rng.random() < 0.3):
            task = uuid7()
            g.open_tasks.append(task)
            state = "submitted"
        else:
            task = rng.choice(g.open_tasks)
            previous = g.task_states[task]
            if previous == "working":
                state = rng.choice(("working", "input_required", "completed", "completed"))
            else:
                state = "working"
        final = state == "completed"
        if final:
            g.open_tasks.remove(task)
            del g.task_states[task]
            g.artifacts.pop(task, None)
        else:
            g.task_states[task] = state
        comment = Message(
            message_id=uuid7(),
            role="agent",
            parts=(Part(text=self.text(260)),),
            task_id=task,
            context_id=g.thread_id,
        )
        return TaskStatusUpdate(
            task_id=task,
            context_id=g.thread_id,
            state=state,  # type: ignore[arg-type]  # one of the TaskState names above
            message=comment,
            final=final,
        )

    def artifact(self, g: ThreadGen) -> Artifact:
        rng = self.rng
        task = rng.choice(g.open_tasks) if g.open_tasks else uuid7()
        artifact_id = g.artifacts.get(task)
        append = artifact_id is not None and rng.random() < 0.5
        if artifact_id is None or not append:
            artifact_id = g.artifacts[task] = uuid7()
        return Artifact(
            task_id=task,
            artifact_id=artifact_id,
            context_id=g.thread_id,
            name=f"{rng.choice(WORDS)}-{rng.randrange(100)}.md",
            description=self.text(60),
            parts=(Part(text=self.text(300)),),
            append=append,
            last_chunk=rng.random() < 0.4,
        )

    def routing(self, g: ThreadGen) -> RoutingDecided:
        rng = self.rng
        names = rng.sample((*ACTORS[1:], "web_search", "code_exec", "summarise"), 3)
        candidates = tuple(
            Candidate(
                name=name,
                kind=rng.choice(("agent", "tool", "workflow")),
                score=round(rng.random(), 3),
                reason=self.text(60),
            )
            for name in names
        )
        return RoutingDecided(
            task_id=rng.choice(g.open_tasks) if g.open_tasks else uuid7(),
            candidates=candidates,
            choice=candidates[0].name,
            choice_kind=candidates[0].kind,
            confidence=round(rng.uniform(0.4, 1.0), 3),
            rationale=self.text(60),
            router="semantic",
            model="gpt-4o-mini",
            latency_ms=round(rng.uniform(5, 80), 2),
        )

    def llm(self) -> LlmCompleted:
        rng = self.rng
        prompt, completion = rng.randint(200, 4000), rng.randint(20, 800)
        request = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": self.text(60)}],
            "temperature": 0.2,
        }
        response = {
            "choices": [{"message": {"role": "assistant", "content": self.text(160)}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
        return LlmCompleted(
            request_id=uuid7(),
            model="gpt-4o-mini",
            purpose=rng.choice(("route", "plan", "summarise", "answer")),
            request_json=json.dumps(request),
            response_json=json.dumps(response),
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=round(rng.uniform(200, 4000), 1),
        )

    def memory(self, g: ThreadGen, actor: str) -> tuple[str, MemorySet, dict[str, int]]:
        """A memory write with the vector ``ThreadCommands`` would give it.

        Some writes race: a second actor writes the same key from the same read (same base
        vector), so the two are concurrent; the second is the thread's next memory write.
        """
        if g.pending is not None:
            out, g.pending = g.pending, None
            return out
        rng = self.rng
        key = rng.choice(KEYS)
        base = g.key_vectors.get(key, {})
        prior_counter = g.counters.get(key, 0)
        prior_map = g.maps.get(key, {})
        first = self.write(g, key, actor, base, prior_counter, prior_map)
        if rng.random() < CONCURRENT:
            other = rng.choice([a for a in g.actors if a != actor])
            second = self.write(g, key, other, base, prior_counter, prior_map)
            g.pending = second
            vector = dict(first[2])
            for a, n in second[2].items():
                vector[a] = max(vector.get(a, 0), n)
            g.key_vectors[key] = vector
            if key in COUNTER_KEYS:  # what the merge policy makes of the two
                g.counters[key] = prior_counter + sum(
                    int(w[1].value_json) - prior_counter for w in (first, second)
                )
        else:
            g.key_vectors[key] = first[2]
        return first

    def write(
        self,
        g: ThreadGen,
        key: str,
        actor: str,
        base: dict[str, int],
        prior_counter: int,
        prior_map: dict[str, str],
    ) -> tuple[str, MemorySet, dict[str, int]]:
        rng = self.rng
        vector = dict(base)
        vector[actor] = max(vector.get(actor, 0), g.own.get(actor, 0)) + 1
        g.own[actor] = vector[actor]
        if key in COUNTER_KEYS:
            value = prior_counter + rng.randint(1, 500)
            g.counters[key] = value
            payload = MemorySet(key=key, value_json=str(value), kind="counter")
        elif key in MAP_KEYS:
            fields = dict(prior_map) or {f: self.text(60) for f in ("name", "goal", "style")}
            fields[rng.choice(("name", "goal", "style", "constraints", "notes"))] = self.text(60)
            g.maps[key] = fields
            payload = MemorySet(key=key, value_json=json.dumps(fields), kind="map")
        else:
            value_ = {"step": rng.randrange(17), "notes": self.text(380), "done": [1, 2, 3]}
            payload = MemorySet(key=key, value_json=json.dumps(value_))
        return actor, payload, vector


def make_stream(gen: Generator, n_events: int, n_threads: int) -> Stream:
    """``n_events`` events spread at random over ``n_threads`` threads."""
    out: Stream = []
    for i in range(n_events):
        thread_id = f"thread-{gen.rng.randrange(n_threads):04d}"
        out.append((thread_id, gen.event(thread_id, i)))
    return out


def make_long_stream(gen: Generator, n_events: int) -> Stream:
    """``n_events`` of the long thread, each followed by one event of a filler thread."""
    out: Stream = []
    for i in range(n_events):
        out.append((LONG_THREAD, gen.event(LONG_THREAD, 2 * i)))
        filler = f"filler-{gen.rng.randrange(FILLER_THREADS):03d}"
        out.append((filler, gen.event(filler, 2 * i + 1)))
    return out


async def fill(path: Path, stream: Stream, label: str) -> None:
    """Append ``stream`` to a new log, a window of events at a time (setup, not timed)."""
    async with EmbeddedEventLog(path) as log:
        with progress_bar(label, len(stream)) as update:
            for start in range(0, len(stream), FILL_WINDOW):
                groups: dict[str, list[NewEvent]] = {}
                for thread_id, e in stream[start : start + FILL_WINDOW]:
                    groups.setdefault(thread_id, []).append(e)
                async with anyio.create_task_group() as tg:
                    for thread_id, events in groups.items():
                        tg.start_soon(log.append, thread_id, events)
                update(min(len(stream), start + FILL_WINDOW))
        head = await log.head()
    if head != len(stream):
        raise RuntimeError(f"{path.name} holds {head} events, expected {len(stream)}")


# --- 1. rebuild against the raw decode loop ----------------------------------------------


@dataclasses.dataclass
class RebuildFigures:
    """Rates of each rep, and what the last rebuild wrote."""

    rebuild: list[float]
    decode: list[float]
    threads: int
    snapshots: int
    snapshot_bytes: int


async def rebuild_vs_decode(
    log_path: Path, store_path: Path, rules: MergeRules, total: int, reps: int
) -> RebuildFigures:
    """Time ``rebuild`` and the raw ``read_all`` loop over the same log, ``reps`` times each.

    They take turns (the order alternates each rep), after one untimed raw pass that warms
    SQLite's page cache for both. Each rebuild starts by deleting the previous one's
    snapshots, as ``rebuild`` does.
    """
    clock = time.perf_counter
    out = RebuildFigures([], [], 0, 0, 0)
    async with EmbeddedEventLog(log_path) as log, SqliteSnapshotStore(store_path) as store:

        async def raw(label: str) -> float:
            with progress_bar(label, total) as update:
                t0 = clock()
                position = n = 0
                while batch := await log.read_all(position, PAGE):
                    n += len(batch)
                    position = batch[-1].position + 1
                    if n % (20 * PAGE) == 0:
                        update(n)
                seconds = clock() - t0
            if n != total:
                raise RuntimeError(f"read_all returned {n} events, expected {total}")
            return n / seconds

        async def rebuild_once(label: str) -> float:
            observer = CountingObserver()
            reader = StateReader(
                log, store, rules, snapshot_every=SNAPSHOT_EVERY, observer=observer
            )
            with progress_bar(label, total) as update:
                done = threads = 0

                def progress(thread_id: str, events: int) -> None:
                    nonlocal done, threads
                    done += events
                    threads += 1
                    if threads % 50 == 0:
                        update(done)

                t0 = clock()
                result = await rebuild(reader, progress=progress)
                seconds = clock() - t0
            if result.events != total:
                raise RuntimeError(f"rebuild folded {result.events} events, expected {total}")
            out.threads = result.threads
            out.snapshots = observer.snapshots_saved
            out.snapshot_bytes = observer.snapshot_bytes
            return total / seconds

        await raw("warm-up read_all")
        for rep in range(reps):
            steps: list[tuple[Callable[[str], Awaitable[float]], list[float], str]] = [
                (raw, out.decode, "raw decode loop"),
                (rebuild_once, out.rebuild, "rebuild"),
            ]
            if rep % 2:
                steps.reverse()
            for run, rates, label in steps:
                gc.collect()
                rates.append(await run(f"{label} ({rep + 1}/{reps})"))
    return out


# --- 2. state_at on a long thread ----------------------------------------------------------


class Timed:
    """Forwards to ``target``; adds the time of each awaited method call to ``spent[name]``.

    Wraps the log and the store handed to a ``StateReader``, to see where ``state_at``
    waits without reaching into the reader.
    """

    def __init__(self, target: Any, spent: dict[str, float]) -> None:
        self._target = target
        self._spent = spent

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        spent = self._spent

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

        return timed


class SizeObserver(CountingObserver):
    """Counts like ``CountingObserver`` and keeps the size of each snapshot saved."""

    def __init__(self) -> None:
        self.sizes: dict[str, list[int]] = {}

    def snapshot_saved(self, thread_id: str, seq: int, size: int) -> None:
        super().snapshot_saved(thread_id, seq, size)
        self.sizes.setdefault(thread_id, []).append(size)


@dataclasses.dataclass
class StateAtFigures:
    """Latencies (seconds), the breakdown of ``state_at`` (warm and cold), and sizes."""

    warm: list[float] = dataclasses.field(default_factory=list)
    cold: list[float] = dataclasses.field(default_factory=list)
    nosnap: list[float] = dataclasses.field(default_factory=list)
    peer: list[float] = dataclasses.field(default_factory=list)
    phases: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    tail_events: list[int] = dataclasses.field(default_factory=list)
    stored_bytes: list[int] = dataclasses.field(default_factory=list)
    full_bytes: list[int] = dataclasses.field(default_factory=list)
    rebuild_events: int = 0
    rebuild_seconds: float = 0.0
    long_thread_seconds: float = 0.0


async def state_at_runs(
    log_path: Path,
    store_path: Path,
    rules: MergeRules,
    n_events: int,
    points: Sequence[int],
    every: dict[str, int],
    breakdown_points: int,
    peer: Callable[[int], int] | None,
) -> StateAtFigures:
    """Rebuild the long log's snapshots, then time ``state_at`` at each of ``points``.

    Contenders: ``warm``, one reader used for every read (as in a long-lived process: its
    snapshot chunk, decoded-snapshot and event caches warm up); ``cold``, a new reader per
    read (a process's first read of the thread); ``nosnap``, a reader without a store or
    event cache; ``peer``, if given. Per point: warm and the peer, and cold / nosnap every
    ``every[name]``-th point; the order alternates point by point. The warm reader first
    reads the state at every snapshot, untimed; every contender first reads at 3 points,
    untimed, and they must agree. A last pass times the steps of ``state_at`` (see
    ``PHASES``), warm and cold.
    """
    clock = time.perf_counter
    out = StateAtFigures()
    async with EmbeddedEventLog(log_path) as log, SqliteSnapshotStore(store_path) as store:
        # Snapshots: a rebuild of the whole log (timed for the record: the long thread's
        # share is the time between its progress call and the one before it).
        observer = SizeObserver()
        setup = StateReader(log, store, rules, snapshot_every=SNAPSHOT_EVERY, observer=observer)
        marks: list[tuple[str, float]] = []
        done = 0
        with progress_bar("rebuilding the long log", await log.head()) as update:

            def progress(thread_id: str, events: int) -> None:
                nonlocal done
                marks.append((thread_id, clock()))
                done += events
                update(done)

            t0 = clock()
            result = await rebuild(setup, progress=progress)
        out.rebuild_events, out.rebuild_seconds = result.events, result.seconds
        previous = t0
        for thread_id, at in marks:
            if thread_id == LONG_THREAD:
                out.long_thread_seconds = at - previous
            previous = at
        out.stored_bytes = observer.sizes.get(LONG_THREAD, [])
        del setup

        warm = StateReader(log, store, rules, snapshot_every=SNAPSHOT_EVERY)
        # Without snapshots nor the reader's event cache: every read folds the thread from
        # its first event, decoding every event again (the contrast the issue asks for).
        nosnap = StateReader(log, None, rules, cached_events=0)

        async def checked(reader: StateReader, seq: int) -> ThreadState:
            state = await reader.state_at(LONG_THREAD, seq=seq)
            if state.version != seq:
                raise RuntimeError(f"state_at(seq={seq}) returned version {state.version}")
            return state

        async def of_warm(seq: int) -> ThreadState:
            return await checked(warm, seq)

        async def of_cold(seq: int) -> ThreadState:
            cold = StateReader(log, store, rules, snapshot_every=SNAPSHOT_EVERY)
            return await checked(cold, seq)

        async def of_nosnap(seq: int) -> ThreadState:
            return await checked(nosnap, seq)

        async def of_peer(seq: int) -> int:
            assert peer is not None
            return peer(seq)  # synchronous: blocks the loop, as nothing else runs

        # Warm-up, and the full size of each snapshot: everything a cold read decodes.
        with progress_bar("sizes and warm-up", n_events // SNAPSHOT_EVERY) as update:
            for i, seq in enumerate(range(SNAPSHOT_EVERY, n_events + 1, SNAPSHOT_EVERY)):
                snapshot = encode(await warm.load(LONG_THREAD, to_seq=seq), rules.digest)
                size = len(snapshot.body) + sum(len(c) for c in snapshot.chunks.values())
                out.full_bytes.append(size)
                update(i + 1)
        for seq in points[:3]:
            a, b, c = await of_warm(seq), await of_cold(seq), await of_nosnap(seq)
            if not a == b == c:
                raise RuntimeError(f"state at seq {seq}: snapshot + tail differs from the fold")
            if peer is not None and await of_peer(seq) != len(a.conversation):
                raise RuntimeError(f"peer's conversation at seq {seq} differs from ours")

        with progress_bar("state_at (interleaved)", len(points)) as update:
            for i, seq in enumerate(points):
                contenders: list[tuple[list[float], Callable[[int], Awaitable[object]]]] = [
                    (out.warm, of_warm)
                ]
                if peer is not None:
                    contenders.append((out.peer, of_peer))
                if i % every["cold"] == 0:
                    contenders.append((out.cold, of_cold))
                if i % every["nosnap"] == 0:
                    contenders.append((out.nosnap, of_nosnap))
                if i % 2:
                    contenders.reverse()
                for times, call in contenders:
                    # Collect before each timed read, untimed: garbage one contender leaves
                    # (the cold readers' and the peer's big states) is not charged to the
                    # next one's read.
                    gc.collect()
                    t0 = clock()
                    await call(seq)
                    times.append(clock() - t0)
                update(i + 1)

        # Where the time goes: state_at through readers whose log and store are timed
        # (what is not spent waiting on them is the reader's own work on the loop: decoding
        # the snapshot, and folding the tail, which is then timed again on its own).
        spent: dict[str, float] = {}
        timed_log, timed_store = Timed(log, spent), Timed(store, spent)
        timed_warm = StateReader(timed_log, timed_store, rules, snapshot_every=SNAPSHOT_EVERY)
        for seq in range(SNAPSHOT_EVERY, n_events + 1, SNAPSHOT_EVERY):  # warm its cache
            await timed_warm.load(LONG_THREAD, to_seq=seq)
        for mode in ("warm", "cold"):
            phases: dict[str, list[float]] = {name: [] for name in PHASES}
            for seq in points[:breakdown_points]:
                reader = timed_warm
                if mode == "cold":
                    reader = StateReader(
                        timed_log, timed_store, rules, snapshot_every=SNAPSHOT_EVERY
                    )
                spent.clear()
                t0 = clock()
                state = await reader.state_at(LONG_THREAD, seq=seq)
                total = clock() - t0
                base_seq = seq // SNAPSHOT_EVERY * SNAPSHOT_EVERY
                base = await warm.load(LONG_THREAD, to_seq=base_seq)
                tail = await log.read_thread(LONG_THREAD, base_seq + 1, seq)
                t0 = clock()
                folded, _ = fold(base, tail, rules)
                fold_seconds = clock() - t0
                if folded != state:
                    raise RuntimeError(f"breakdown: snapshot + fold differs at seq {seq}")
                waited = {name: spent.get(name, 0.0) for name in PHASES if name in spent}
                for name in PHASES:  # a step the reader skipped (a cache answered) took 0
                    if name not in ("decode", "fold"):
                        waited.setdefault(name, 0.0)
                for name, seconds in waited.items():
                    phases[name].append(seconds)
                phases["decode"].append(max(0.0, total - sum(waited.values()) - fold_seconds))
                phases["fold"].append(fold_seconds)
                if mode == "warm":
                    out.tail_events.append(len(tail))
            out.phases[mode] = phases
    return out


# --- 3. peer: eventsourcing ----------------------------------------------------------------


class PeerThread(Aggregate):
    """The long thread as an eventsourcing aggregate: conversation, tasks, memory, routing.

    One domain event type per payload type; each carries ``head`` (seq, event id, actor,
    time) and ``body`` (the payload's fields). Simpler than ``ThreadState``: memory keeps
    the last write of each key (no siblings, no merge), and entries are plain dicts.
    """

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.conversation: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.memory: dict[str, dict[str, Any]] = {}
        self.routing: list[dict[str, Any]] = []
        self.llm_calls = 0

    def _task(self, task_id: str, seq: int) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            task = self.tasks[task_id] = {
                "state": "submitted",
                "final": False,
                "history": [],
                "artifacts": {},
                "message_ids": [],
                "created_seq": seq,
            }
        task["updated_seq"] = seq
        return task

    @event("MessageAdded")
    def add_message(self, head: dict[str, Any], body: dict[str, Any]) -> None:
        self.conversation.append({**head, **body})
        if body["task_id"] is not None:
            self._task(body["task_id"], head["seq"])["message_ids"].append(body["message_id"])

    @event("TaskStatusUpdated")
    def update_task(self, head: dict[str, Any], body: dict[str, Any]) -> None:
        task = self._task(body["task_id"], head["seq"])
        task["state"] = body["state"]
        task["final"] = task["final"] or body["final"]
        task["history"].append({**head, **body})

    @event("ArtifactAdded")
    def add_artifact(self, head: dict[str, Any], body: dict[str, Any]) -> None:
        artifacts = self._task(body["task_id"], head["seq"])["artifacts"]
        old = artifacts.get(body["artifact_id"])
        parts = [*old["parts"], body["text"]] if old and body["append"] else [body["text"]]
        artifacts[body["artifact_id"]] = {**body, "parts": parts, "updated_seq": head["seq"]}

    @event("MemorySet")
    def set_memory(self, head: dict[str, Any], body: dict[str, Any]) -> None:
        self.memory[body["key"]] = {**head, **body}

    @event("RoutingDecided")
    def decide_route(self, head: dict[str, Any], body: dict[str, Any]) -> None:
        self.routing.append({**head, **body})

    @event("LlmCompleted")
    def complete_llm(self, head: dict[str, Any], body: dict[str, Any]) -> None:
        self.llm_calls += 1  # history only, as in agentlog's fold


class PeerApp(Application[UUID]):
    """An application whose repository uses snapshots, one every 100 versions."""

    snapshotting_intervals = {PeerThread: SNAPSHOT_EVERY}  # noqa: RUF012  # the library's API


def peer_apply(agg: PeerThread, seq: int, e: NewEvent) -> None:
    """Call the aggregate's command matching ``e``'s payload (its ``seq``-th event)."""
    head = {"seq": seq, "event_id": e.event_id, "actor": e.actor, "occurred_at": e.occurred_at}
    p = e.payload
    if isinstance(p, Message):
        body = {k: getattr(p, k) for k in ("message_id", "role", "task_id")}
        agg.add_message(head, {**body, "text": p.parts[0].text})
    elif isinstance(p, TaskStatusUpdate):
        m = p.message
        body = {"task_id": p.task_id, "state": p.state, "final": p.final}
        if m is not None:
            body |= {"message_id": m.message_id, "text": m.parts[0].text}
        agg.update_task(head, body)
    elif isinstance(p, Artifact):
        body = {k: getattr(p, k) for k in ("task_id", "artifact_id", "name", "description")}
        body |= {"text": p.parts[0].text, "append": p.append, "complete": p.last_chunk}
        agg.add_artifact(head, body)
    elif isinstance(p, MemorySet):
        body = {"key": p.key, "value_json": p.value_json, "kind": p.kind}
        agg.set_memory(head, {**body, "vector": dict(e.version_vector)})
    elif isinstance(p, RoutingDecided):
        body = {k: getattr(p, k) for k in ("task_id", "choice", "confidence", "rationale")}
        body["candidates"] = [dataclasses.asdict(c) for c in p.candidates]
        agg.decide_route(head, body)
    else:
        assert isinstance(p, LlmCompleted)
        fields = ("request_id", "model", "purpose", "request_json", "response_json")
        agg.complete_llm(head, {k: getattr(p, k) for k in fields})


def peer_fill(path: Path, events: Sequence[NewEvent]) -> tuple[Any, Any]:
    """Store the long thread's events in a new peer app, one ``save`` per event."""
    app = PeerApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    agg = PeerThread(LONG_THREAD)
    with progress_bar("peer: saving the long thread", len(events)) as update:
        app.save(agg)
        for seq, e in enumerate(events, 1):
            peer_apply(agg, seq, e)
            app.save(agg)
            if seq % 500 == 0:
                update(seq)
    return app, agg.id


def peer_getter(app: Any, aggregate_id: Any) -> Callable[[int], int]:
    """A function: the aggregate after our ``seq``-th event; returns its message count."""

    def get(seq: int) -> int:
        agg = app.repository.get(aggregate_id, version=seq + 1)  # version 1: its creation
        return len(agg.conversation)

    return get


# --- sizes -------------------------------------------------------------------------------


def file_bytes(path: Path) -> int:
    """Size of a SQLite file with its WAL."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def peer_snapshot_bytes(path: Path) -> float:
    """Mean size of the peer's stored snapshots (JSON) in bytes."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT avg(length(state)) FROM stored_snapshots").fetchone()
    finally:
        con.close()
    return float(row[0] or 0)


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the rebuild log")
    parser.add_argument("--threads", type=int, default=500, help="threads they spread over")
    parser.add_argument(
        "--thread-events", type=int, default=10_000, help="events of the long thread"
    )
    parser.add_argument("--points", type=int, default=300, help="state_at samples (snapshots)")
    parser.add_argument(
        "--nosnap-points", type=int, default=30, help="state_at samples without snapshots"
    )
    parser.add_argument(
        "--cold-points", type=int, default=100, help="state_at samples with a new reader each"
    )
    parser.add_argument("--reps", type=int, default=3, help="rebuild / raw decode runs each")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--skip-peer", action="store_true", help="leave out eventsourcing")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.threads, args.thread_events = 10_000, 50, 2_000
        args.points, args.cold_points, args.nosnap_points, args.reps = 40, 20, 8, 1
    args.cold_points = max(1, min(args.cold_points, args.points))
    args.nosnap_points = max(1, min(args.nosnap_points, args.points))
    rules = MergeRules.from_mapping(RULES)

    print(f"# agentlog projections benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"# machine: nproc={os.cpu_count()} {platform.machine()} {platform.system()} "
        f"{platform.release()}"
    )
    print(
        f"# python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"fastavro {fastavro.__version__}, pydantic {metadata.version('pydantic')}, "
        f"anyio {metadata.version('anyio')}, eventsourcing {metadata.version('eventsourcing')}"
    )
    mix = ", ".join(f"{t} {100 * w:g}%" for t, w in MIX)
    print(f"# mix: {mix}; {len(KEYS)} memory keys per thread, {100 * CONCURRENT:g}% racing")
    print(f"# merge rules: {json.dumps(RULES)}, default last-write-wins")
    print(
        f"# rebuild: {args.events} events over {args.threads} threads, SqliteSnapshotStore, "
        f"snapshot_every={SNAPSHOT_EVERY}, {args.reps} runs each, medians; raw decode loop: "
        f"log.read_all pages of {PAGE}"
    )
    print(
        f"# state_at: {LONG_THREAD!r} of {args.thread_events} events interleaved with "
        f"{args.thread_events} of {FILLER_THREADS} filler threads; {args.points} random seqs "
        f"(seed 7), about {args.cold_points} of them also with a new reader each, "
        f"{args.nosnap_points} without snapshots",
        flush=True,
    )

    t_start = time.perf_counter()
    with err.status("building the workload"):
        gen = Generator(42)
        stream = make_stream(gen, args.events, args.threads)
        long_stream = make_long_stream(gen, args.thread_events)
        del gen
    gc.collect()
    gc.freeze()  # the pre-built events live for the whole run: keep the collector off them

    codec = Codec()
    sizes: dict[str, list[int]] = {}
    for thread_id, e in stream[:20_000]:
        sizes.setdefault(e.payload.TYPE, []).append(len(codec.encode(thread_id, 1, e)))
    figure("event size mean", statistics.fmean(s for v in sizes.values() for s in v), "bytes")
    for kind, _ in MIX:
        if kind in sizes:
            note(
                f"{kind}: {100 * len(sizes[kind]) / min(len(stream), 20_000):.1f}% of events, "
                f"{statistics.fmean(sizes[kind]):.0f} bytes mean"
            )
    long_events = [e for t, e in long_stream if t == LONG_THREAD]

    ratios: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-", dir=args.dir) as tmp:
        d = Path(tmp)
        anyio.run(fill, d / "log.db", stream, "filling the rebuild log")
        anyio.run(fill, d / "long.db", long_stream, "filling the long log")

        # 1. rebuild against the raw decode loop
        rb = anyio.run(
            rebuild_vs_decode, d / "log.db", d / "snapshots.db", rules, len(stream), args.reps
        )
        rebuild_rate = statistics.median(rb.rebuild)
        decode_rate = statistics.median(rb.decode)
        figure("rebuild_events", len(stream), "events")
        figure("rebuild_threads", rb.threads, "threads")
        figure("rebuild_events_per_s", rebuild_rate, "events/s")
        figure("raw_decode_events_per_s", decode_rate, "events/s")
        note("runs: rebuild " + ", ".join(f"{r:.0f}" for r in rb.rebuild) + " events/s")
        note("runs: raw decode " + ", ".join(f"{r:.0f}" for r in rb.decode) + " events/s")
        figure("rebuild_snapshots", rb.snapshots, "snapshots")
        figure("rebuild_snapshot_bytes_avg", rb.snapshot_bytes / max(1, rb.snapshots), "bytes")
        figure("snapshot_store_bytes", file_bytes(d / "snapshots.db"), "bytes")
        ratios.append(("rebuild", rebuild_rate / decode_rate, 0.4))

        # 2. state_at on the long thread, with the peer interleaved
        peer: Callable[[int], int] | None = None
        app: Any = None
        if not args.skip_peer:
            note(
                f"peer: eventsourcing on SQLite, snapshotting_intervals={SNAPSHOT_EVERY}, JSON "
                "without compression; repository.get(id, version=k + 1) (no cache for versions)"
            )
            app, agg_id = peer_fill(d / "peer.db", long_events)
            peer = peer_getter(app, agg_id)
        rng = random.Random(7)
        points = [rng.randint(1, args.thread_events) for _ in range(args.points)]
        every = {
            "cold": max(1, args.points // args.cold_points),
            "nosnap": max(1, args.points // args.nosnap_points),
        }
        breakdown = min(100, args.points)
        sa = anyio.run(
            state_at_runs,
            d / "long.db",
            d / "snapshots-long.db",
            rules,
            args.thread_events,
            points,
            every,
            breakdown,
            peer,
        )
        if app is not None:
            app.close()
        figure("long_log_rebuild_events_per_s", sa.rebuild_events / sa.rebuild_seconds, "events/s")
        figure("long_thread_rebuild_s", sa.long_thread_seconds, "s", 2)
        figure("snapshots_long_thread", len(sa.full_bytes), "snapshots")
        figure("snapshot_bytes_avg", statistics.fmean(sa.full_bytes), "bytes")
        figure("snapshot_bytes_max", max(sa.full_bytes), "bytes")
        figure("snapshot_stored_bytes_avg", statistics.fmean(sa.stored_bytes), "bytes")
        figure("snapshot_store_long_bytes", file_bytes(d / "snapshots-long.db"), "bytes")

        def latency(name: str, times: list[float]) -> float:
            figure(f"{name}_samples", len(times), "reads")
            figure(f"{name}_p50_ms", 1e3 * percentile(times, 0.5), "ms", 2)
            p99 = 1e3 * percentile(times, 0.99)
            figure(f"{name}_p99_ms", p99, "ms", 2)
            return p99

        snap_p99 = latency("state_at_snap", sa.warm)
        cold_p99 = latency("state_at_snap_cold", sa.cold)
        latency("state_at_nosnap", sa.nosnap)
        ratios.append(("state_at_p99", 10 / snap_p99, 1))
        ratios.append(("state_at_cold_p99", 10 / cold_p99, 1))

        note(f"state_at step by step, means over {breakdown} of the seqs:")
        for name, text in PHASES.items():
            note(f"  {name}: {text}")
        figure("state_at_tail_events_mean", statistics.fmean(sa.tail_events), "events", 1)
        for mode, phases in sa.phases.items():
            means = {name: 1e3 * statistics.fmean(values) for name, values in phases.items()}
            prefix = "state_at_snap" if mode == "warm" else "state_at_snap_cold"
            for name, value in means.items():
                figure(f"{prefix}_{name}_ms", value, "ms", 2)
            load = means["latest"] + means["load_chunks"] + means["decode"]
            figure(f"{prefix}_snapshot_load_decode_ms", load, "ms", 2)
            figure(f"{prefix}_tail_read_fold_ms", means["read_thread"] + means["fold"], "ms", 2)

        if peer is not None:
            peer_p99 = latency("peer_state_at", sa.peer)
            figure("peer_snapshot_bytes_avg", peer_snapshot_bytes(d / "peer.db"), "bytes")
            ratios.append(("state_at_vs_peer_p99", peer_p99 / snap_p99, 1))

    figure("total wall time", time.perf_counter() - t_start, "s", 1)
    for name, value, goal in ratios:
        ratio(name, value, goal)


if __name__ == "__main__":
    main()
