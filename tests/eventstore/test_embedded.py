"""What only the embedded (SQLite) log promises: crash safety, several processes on one
file, clear errors for files that are not logs, and power-loss mode."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from eventstore import Codec, CorruptLog, EmbeddedEventLog, LogClosed, StorageUnavailable
from eventstore._sqlite_file import LOG_APPLICATION_ID
from eventstore._sqlite_format import event_key
from tests.samples import event

pytestmark = pytest.mark.anyio

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]
CODEC = Codec()


def _spawn(*args: str, settle_rows: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if settle_rows is not None:
        env["SETTLE_ROWS"] = str(settle_rows)
    return subprocess.Popen(
        [sys.executable, str(WRITER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _read_acks(proc: subprocess.Popen[str], count: int) -> list[list[str]]:
    acks = []
    assert proc.stdout is not None
    while len(acks) < count:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer ended early: {proc.stderr.read() if proc.stderr else ''}")
        if line.startswith("ack "):
            acks.append(line.split()[1:])
    return acks


async def test_acknowledged_appends_survive_kill_9(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    proc = _spawn(str(log_path), "8")
    try:
        acks = _read_acks(proc, 400)
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    async with EmbeddedEventLog(log_path) as log:
        stored = {e.event_id: e for e in await log.read_all(limit=1_000_000)}
        for event_id, position, seq, thread in acks:
            got = stored.get(event_id)
            assert got is not None, f"acknowledged event {event_id} lost"
            assert (got.position, got.seq, got.thread_id) == (int(position), int(seq), thread)
        # every thread is still gap-free, and the log takes new appends where it stopped
        for w in range(8):
            seqs = [e.seq for e in await log.read_thread(f"crash-{w}")]
            assert seqs == list(range(1, len(seqs) + 1))
        version = await log.version("crash-0")
        assert (
            await log.append("crash-0", [event()], expected_version=version)
        ).version == version + 1


async def test_an_append_cancelled_once_queued_is_still_committed(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path) as log:
        new = event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.append, "cancelled", [new])
            await anyio.lowlevel.checkpoint()  # it is queued for the writer, waiting
            tg.cancel_scope.cancel()
        await log.append("later", [event()])  # groups commit in order
        assert await log.version("cancelled") == 1
        retry = await log.append("cancelled", [new])
        assert retry.deduplicated and retry.version == 1


@pytest.mark.parametrize("settle_rows", [None, 3], ids=["default", "settling"])
async def test_processes_sharing_a_file_keep_one_winner_per_version(
    log_path: Path, settle_rows: int | None
) -> None:
    log_path.parent.mkdir(parents=True)
    async with EmbeddedEventLog(log_path) as log:
        await log.append("shared", [event()])
    procs = [_spawn(str(log_path), "3", "shared", settle_rows=settle_rows) for _ in range(2)]
    try:
        acks = [a for p in procs for a in _read_acks(p, 60)]
    finally:
        for p in procs:
            _kill(p)
    seqs = [int(seq) for _, _, seq, _ in acks]
    assert len(seqs) == len(set(seqs)), "two writers were both told they appended the same seq"
    async with EmbeddedEventLog(log_path) as log:
        stored = await log.read_thread("shared")
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    by_seq = {e.seq: e.event_id for e in stored}
    for event_id, _, seq, _ in acks:
        assert by_seq[int(seq)] == event_id


async def test_the_thread_index_moves_recent_events_into_the_settled_part(
    log_path: Path,
) -> None:
    positions: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    async with EmbeddedEventLog(log_path, settle_rows=5) as log:
        for i in range(23):
            thread = "abc"[i % 3]
            positions[thread] += (await log.append(thread, [event()])).positions
        positions["a"] += (await log.append("a", [event() for _ in range(4)])).positions
        for thread, expected in positions.items():
            n = len(expected)
            assert [e.position for e in await log.read_thread(thread)] == expected
            assert [e.seq for e in await log.read_thread(thread)] == list(range(1, n + 1))
            window = await log.read_thread(thread, 2, n - 1)  # across both parts
            assert [e.position for e in window] == expected[1:-1]
            assert await log.version(thread) == n
        assert [(t.thread_id, t.version, t.first_position) for t in await log.threads()] == [
            (thread, len(expected), expected[0]) for thread, expected in positions.items()
        ]
    con = sqlite3.connect(log_path)
    try:
        settled, recent, total, distinct = con.execute(
            "SELECT (SELECT count(*) FROM thread_index), (SELECT count(*) FROM"
            " thread_index_recent), (SELECT count(*) FROM events), (SELECT count(*) FROM"
            " (SELECT position FROM thread_index UNION SELECT position FROM thread_index_recent))"
        ).fetchone()
    finally:
        con.close()
    assert settled + recent == total == distinct == 27  # every event in exactly one part
    assert settled >= 20 and recent <= 5 + 4


#: The tables of format 1 of the log file, as agentlog 0.1 created them before the thread
#: index had two parts.
FORMAT_1 = (
    "CREATE TABLE threads (tid INTEGER PRIMARY KEY, thread_id TEXT NOT NULL UNIQUE,"
    " tenant TEXT NOT NULL)",
    "CREATE TABLE events (position INTEGER PRIMARY KEY, tid INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, event_key INTEGER NOT NULL, occurred_at INTEGER NOT NULL,"
    " body BLOB NOT NULL)",
    "CREATE UNIQUE INDEX events_thread_seq ON events (tid, seq)",
    "CREATE INDEX events_event_key ON events (event_key)",
)


async def test_a_format_1_log_is_upgraded_when_opened(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    stream = [("a", event()), ("b", event()), ("a", event())]
    con = sqlite3.connect(log_path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    for statement in FORMAT_1:
        con.execute(statement)
    con.executemany("INSERT INTO threads VALUES (?, ?, 'default')", [(1, "a"), (2, "b")])
    seqs: dict[str, int] = {}
    for position, (thread, new) in enumerate(stream, 1):
        seqs[thread] = seq = seqs.get(thread, 0) + 1
        body = CODEC.encode(thread, seq, new)
        con.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (position, 1 if thread == "a" else 2, seq, event_key(new.event_id), 0, body),
        )
    con.execute(f"PRAGMA application_id = {LOG_APPLICATION_ID}")
    con.execute("PRAGMA user_version = 1")
    con.close()
    async with EmbeddedEventLog(log_path) as log:
        assert [e.event_id for e in await log.read_thread("a")] == [
            stream[0][1].event_id,
            stream[2][1].event_id,
        ]
        assert await log.version("a") == 2
        assert (await log.append("a", [event()], expected_version=2)).first_seq == 3
        assert (await log.append("b", [stream[1][1]])).deduplicated
    con = sqlite3.connect(log_path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
        assert not con.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'events_thread_seq'"
        ).fetchall()
    finally:
        con.close()


async def test_a_log_of_an_unknown_format_is_refused(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path):
        pass
    con = sqlite3.connect(log_path)
    con.execute("PRAGMA user_version = 9")
    con.close()
    with pytest.raises(CorruptLog, match="log format 9, this agentlog reads format 2"):
        async with EmbeddedEventLog(log_path):
            pass


async def test_subscriber_sees_appends_of_another_process(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path, poll_interval=0.05) as log:
        proc = _spawn(str(log_path), "1")
        try:
            with anyio.fail_after(20):
                async for e in log.subscribe(1):
                    assert e.thread_id == "crash-0"
                    if e.seq == 5:
                        break
        finally:
            _kill(proc)


async def test_a_file_that_is_not_sqlite_is_refused_clearly(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(CorruptLog) as info:
        async with EmbeddedEventLog(bogus):
            pass
    assert str(bogus) in str(info.value)
    assert "not a readable SQLite database" in str(info.value)


async def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(CorruptLog, match="another application"):
        async with EmbeddedEventLog(foreign):
            pass
    con = sqlite3.connect(foreign)
    assert con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 1  # untouched
    con.close()


async def test_a_damaged_log_gives_a_clear_error(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path) as log:
        for i in range(50):
            await log.append(f"t{i}", [event()])
    data = bytearray(log_path.read_bytes())
    for offset in range(4096, len(data), 7):
        data[offset] = 0xFF
    log_path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{log_path}{suffix}").unlink(missing_ok=True)
    with pytest.raises((CorruptLog, LogClosed)) as info:
        async with EmbeddedEventLog(log_path) as log:
            await log.read_all()
    assert str(log_path) in str(info.value)


async def test_power_loss_mode_appends_and_reads(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path, fsync=True) as log:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(log.append, f"t{i % 4}", [event()])
        counts = [len(await log.read_thread(f"t{i}")) for i in range(4)]
        assert counts == [5, 5, 5, 5]
    con = sqlite3.connect(log_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


async def test_reopening_continues_the_log(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path) as log:
        first = await log.append("t", [event(), event()])
    async with EmbeddedEventLog(log_path) as log:
        second = await log.append("t", [event()], expected_version=2)
        assert second.positions[0] == first.positions[-1] + 1
        assert [e.seq for e in await log.read_thread("t")] == [1, 2, 3]
        assert [t.thread_id for t in await log.threads()] == ["t"]


def test_bad_options_are_refused(log_path: Path) -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        EmbeddedEventLog(log_path, max_event_bytes=10)
    with pytest.raises(ValueError, match="max_pending"):
        EmbeddedEventLog(log_path, max_pending=0)
    with pytest.raises(ValueError, match="settle_rows"):
        EmbeddedEventLog(log_path, settle_rows=0)


async def test_a_lock_held_too_long_is_a_retriable_storage_error(log_path: Path) -> None:
    async with EmbeddedEventLog(log_path, busy_timeout=0.2) as log:
        await log.append("t", [event()])
        blocker = sqlite3.connect(log_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StorageUnavailable) as info:
                await log.append("t", [event()])
            assert info.value.retriable
            assert str(log_path) in str(info.value) and "locked" in str(info.value)
            assert await log.version("t") == 1  # reads still work under a writer's lock
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # once the lock is gone, the same log appends again
        assert (await log.append("t", [event()], expected_version=1)).version == 2


async def test_reads_longer_than_a_decode_slice_come_whole_and_cut_at_until(
    log_path: Path,
) -> None:
    from eventstore._loop import DECODE_SLICE

    start = datetime(2026, 1, 1, tzinfo=UTC)
    total = 2 * DECODE_SLICE + 17
    async with EmbeddedEventLog(log_path) as log:
        for i in range(0, total, 50):
            batch = [
                event(occurred_at=start + timedelta(seconds=i + j))
                for j in range(min(50, total - i))
            ]
            await log.append("long", batch)

        assert [e.seq for e in await log.read_thread("long")] == list(range(1, total + 1))
        # cut in the second slice: events 1..cut occurred at or before the time
        cut = DECODE_SLICE + 5
        until = start + timedelta(seconds=cut - 1)
        assert [e.seq for e in await log.read_thread("long", until=until)] == list(
            range(1, cut + 1)
        )
        assert [e.seq for e in await log.read_thread("long", 3, total - 2)] == list(
            range(3, total - 1)
        )
        assert [e.position for e in await log.read_all(0, total)] == list(range(1, total + 1))
        seen = []
        async for e in log.subscribe(0):
            seen.append(e.seq)
            if len(seen) == total:
                break
        assert seen == list(range(1, total + 1))
