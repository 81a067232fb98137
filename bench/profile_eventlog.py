"""Profile where agentlog spends its time in the W1 and W2 workloads of ``eventlog.py``.

Run from the project root::

    PYTHONPATH=. .venv/bin/python bench/profile_eventlog.py [--events N] [--top K] [--fsync]

Prints the ``cProfile`` top functions (by cumulative and by own time) for W1 (64
concurrent appenders) and for W2 (reading the 1000-event thread 100 times). cProfile
slows Python code down unevenly, so use it to see the shape, not for figures.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import re
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eventlog  # the benchmark module next to this file

from eventstore import Codec, EmbeddedEventLog
from eventstore._sqlite import SqliteStore  # profiled below the async layer


class TimedConnection:
    """Wraps a ``sqlite3.Connection`` and adds up the time spent per SQL statement."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def _key(self, sql: str, many: bool) -> str:
        sql = re.sub(r"IN \([?,]+\)", "IN (?...)", sql)
        sql = re.sub(r"= \d+", "= N", sql)
        return ("executemany " if many else "") + sql

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        t0 = time.perf_counter()
        try:
            return self._con.execute(sql, *args)
        finally:
            key = self._key(sql, False)
            self.seconds[key] += time.perf_counter() - t0
            self.calls[key] += 1

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        t0 = time.perf_counter()
        try:
            return self._con.executemany(sql, rows)
        finally:
            key = self._key(sql, True)
            self.seconds[key] += time.perf_counter() - t0
            self.calls[key] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def report(self) -> None:
        total = sum(self.seconds.values())
        print(f"\n===== W1 writer SQL time (total {total:.2f} s) =====")
        for key, secs in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            calls = self.calls[key]
            print(f"{secs:8.3f} s {calls:8d} calls {1e6 * secs / calls:9.1f} us/call  {key[:90]}")


def show(profile: cProfile.Profile, title: str, top: int) -> None:
    """Print the ``top`` functions by cumulative and by own time."""
    print(f"\n===== {title} =====")
    stats = pstats.Stats(profile)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def baseline_split(stream: eventlog.Stream) -> None:
    """Time the baseline's encoding alone, to split its W1 time into encode and SQLite."""
    raw = eventlog.Raw(Codec())
    seqs: dict[str, int] = {}
    t0 = time.perf_counter()
    for thread_id, event in stream:
        seq = seqs.get(thread_id, 0) + 1
        seqs[thread_id] = seq
        raw.encode(thread_id, seq, event)
    secs = time.perf_counter() - t0
    print(f"\nbaseline encode only: {1e6 * secs / len(stream):.1f} us/event")
    codec = Codec()
    t0 = time.perf_counter()
    for thread_id, event in stream:
        codec.prepare(thread_id, event)
    secs = time.perf_counter() - t0
    print(f"agentlog Codec.prepare only: {1e6 * secs / len(stream):.1f} us/event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--fsync", action="store_true", help="profile W1 with fsync=True")
    args = parser.parse_args()
    work = eventlog.make_workload(args.events, args.threads)
    gc.collect()
    gc.freeze()
    stream = work.stream(args.events)
    with tempfile.TemporaryDirectory(prefix="agentlog-prof-") as tmp:
        path = Path(tmp) / "ours.db"
        timed: list[TimedConnection] = []

        def instrument(log: EmbeddedEventLog) -> None:
            store = log._store
            assert store is not None
            timed.append(TimedConnection(store._w))
            store._w = timed[0]  # type: ignore[assignment]  # duck-typed stand-in

        prof = cProfile.Profile()
        prof.enable()
        secs, _ = anyio.run(
            eventlog.agentlog_w1, path, stream, args.fsync, "W1 (profiled)", instrument
        )
        prof.disable()
        print(f"W1 under cProfile: {len(stream) / secs:.0f} events/s")
        show(prof, "W1", args.top)
        timed[0].report()
        baseline_split(stream)
        # read_thread runs in a worker thread, which cProfile does not see: profile the
        # store's synchronous read directly, on this thread.
        store = SqliteStore(
            path, Codec(), fsync=False, max_event_bytes=1 << 20, busy_timeout_ms=10_000
        )
        try:
            for _ in range(5):
                store.read_thread(eventlog.LONG_THREAD, 1, None, None)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(100):
                store.read_thread(eventlog.LONG_THREAD, 1, None, None)
            prof.disable()
        finally:
            store.close()
        show(prof, "W2 (SqliteStore.read_thread, 100 reads)", args.top)


if __name__ == "__main__":
    main()
