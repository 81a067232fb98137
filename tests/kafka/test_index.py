"""The Kafka backend's thread index (``eventstore/kafka/_index.py``); no broker needed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore._sqlite import SqliteStore
from eventstore.codec import Codec
from eventstore.errors import CorruptLog, EventStoreError, LogClosed
from eventstore.factory import new_event
from eventstore.kafka._index import IndexConflict, Located, ThreadIndex
from eventstore.payloads import MemorySet
from tests.kafka.holding import held_by_another_thread

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CODEC = Codec()


def record(
    partition: int,
    offset: int,
    thread_id: str,
    seq: int,
    *,
    event_id: str | None = None,
    minute: int = 0,
) -> tuple[int, int, bytes]:
    """A consumed record holding the ``seq``-th event of ``thread_id``."""
    event = new_event(
        MemorySet(key=f"k{seq}", value_json=str(seq)),
        actor="tester",
        event_id=event_id or f"{thread_id}-{seq}",
        occurred_at=T0 + timedelta(minutes=minute),
    )
    return partition, offset, CODEC.encode(thread_id, seq, event)


@pytest.fixture
def index() -> Iterator[ThreadIndex]:
    idx = ThreadIndex(":memory:", CODEC)
    yield idx
    idx.close()


def interleaved() -> list[tuple[int, int, bytes]]:
    # thread a lives on partition 0, thread b on partition 1; the consumer interleaves them
    return [
        record(0, 0, "a", 1),
        record(1, 0, "b", 1),
        record(1, 1, "b", 2),
        record(0, 1, "a", 2),
        record(0, 2, "a", 3),
        record(1, 2, "b", 3),
    ]


def test_ingested_threads_read_back_in_seq_order(index: ThreadIndex) -> None:
    stored = index.ingest(interleaved())

    assert [(e.thread_id, e.seq) for e in stored] == [
        ("a", 1),
        ("b", 1),
        ("b", 2),
        ("a", 2),
        ("a", 3),
        ("b", 3),
    ]
    assert [e.seq for e in index.read_thread("a")] == [1, 2, 3]
    assert [e.event_id for e in index.read_thread("b")] == ["b-1", "b-2", "b-3"]
    assert index.read_thread("unknown") == []
    assert index.version("a") == 3
    assert index.version("unknown") == 0


def test_positions_are_gap_free_in_ingest_order(index: ThreadIndex) -> None:
    first = index.ingest(interleaved()[:4])
    second = index.ingest(interleaved()[4:])

    assert [e.position for e in first + second] == [1, 2, 3, 4, 5, 6]
    assert [e.position for e in index.read_all(0, 100)] == [1, 2, 3, 4, 5, 6]
    assert [e.position for e in index.read_thread("a")] == [1, 4, 5]
    assert index.head() == 6


def test_redelivered_records_store_nothing_new(index: ThreadIndex) -> None:
    index.ingest(interleaved())

    assert index.ingest(interleaved()) == []
    # the same events again at new offsets: a producer retry that was written twice
    again = [record(0, 3, "a", 3), record(1, 3, "b", 2)]
    assert index.ingest(again) == []

    assert index.head() == 6
    assert index.checkpoints() == {0: 4, 1: 4}
    assert [e.seq for e in index.read_thread("a")] == [1, 2, 3]


def test_a_repeat_within_one_batch_is_stored_once(index: ThreadIndex) -> None:
    stored = index.ingest([record(0, 0, "a", 1), record(0, 1, "a", 1), record(0, 2, "a", 2)])

    assert [(e.seq, e.position) for e in stored] == [(1, 1), (2, 2)]
    assert index.checkpoints() == {0: 3}


def test_records_below_the_checkpoint_are_skipped(index: ThreadIndex) -> None:
    index.ingest([record(0, 0, "a", 1), record(0, 1, "a", 2)])

    # offset 1 is below the checkpoint even though it now holds another event
    stored = index.ingest([record(0, 1, "x", 1), record(0, 2, "a", 3)])

    assert [(e.thread_id, e.seq) for e in stored] == [("a", 3)]
    assert index.read_thread("x") == []


def test_a_different_event_at_a_stored_seq_is_a_conflict(index: ThreadIndex) -> None:
    index.ingest([record(0, 0, "a", 1), record(0, 1, "a", 2)])

    with pytest.raises(IndexConflict) as info:
        index.ingest([record(1, 0, "b", 1), record(0, 2, "a", 2, event_id="intruder")])

    err = info.value
    assert isinstance(err, EventStoreError)
    assert not err.retriable
    assert (err.thread_id, err.seq) == ("a", 2)
    assert (err.stored_event_id, err.new_event_id) == ("a-2", "intruder")
    assert (err.partition, err.offset) == (0, 2)
    assert "'a'" in str(err) and "intruder" in str(err)
    # nothing of the failed batch was stored, and the checkpoints did not move
    assert index.read_thread("b") == []
    assert index.checkpoints() == {0: 2}


def test_a_thread_added_by_a_failed_ingest_is_not_remembered(index: ThreadIndex) -> None:
    index.ingest([record(0, 0, "a", 1)])
    with pytest.raises(IndexConflict):  # adds thread "b", then rolls back
        index.ingest([record(1, 0, "b", 1), record(0, 1, "a", 1, event_id="intruder")])

    index.ingest([record(2, 0, "c", 1)])  # a new thread: it may get the row "b" had
    index.ingest([record(1, 0, "b", 1), record(1, 1, "b", 2)])

    assert [e.event_id for e in index.read_thread("b")] == ["b-1", "b-2"]
    assert [e.event_id for e in index.read_thread("c")] == ["c-1"]
    assert index.versions(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 1}


def test_checkpoints_advance_per_partition(index: ThreadIndex) -> None:
    assert index.checkpoints() == {}

    index.ingest([record(0, 0, "a", 1), record(2, 7, "c", 1)])
    assert index.checkpoints() == {0: 1, 2: 8}

    index.ingest([record(2, 8, "c", 2), record(2, 9, "c", 3)])
    assert index.checkpoints() == {0: 1, 2: 10}

    index.ingest([])
    assert index.checkpoints() == {0: 1, 2: 10}


def test_read_thread_ranges_and_until(index: ThreadIndex) -> None:
    index.ingest([record(0, i, "a", i + 1, minute=(0, 1, 5, 2, 9)[i]) for i in range(5)])

    assert [e.seq for e in index.read_thread("a", from_seq=2)] == [2, 3, 4, 5]
    assert [e.seq for e in index.read_thread("a", from_seq=2, to_seq=4)] == [2, 3, 4]
    assert [e.seq for e in index.read_thread("a", to_seq=1)] == [1]
    assert index.read_thread("a", from_seq=6) == []
    # seq 3 occurred after the cut, so seq 4 (earlier again) is left out: a prefix
    until = T0 + timedelta(minutes=2)
    assert [e.seq for e in index.read_thread("a", until=until)] == [1, 2]
    assert [e.seq for e in index.read_thread("a", until=T0 + timedelta(minutes=1))] == [1, 2]
    assert index.read_thread("a", until=T0 - timedelta(seconds=1)) == []
    assert len(index.read_thread("a", until=T0 + timedelta(hours=1))) == 5


def test_read_all_pages_through_the_index(index: ThreadIndex) -> None:
    index.ingest(interleaved())

    pages = []
    position = 0
    while page := index.read_all(position, 4):
        pages.append([e.position for e in page])
        position = page[-1].position + 1

    assert pages == [[1, 2, 3, 4], [5, 6]]
    assert [e.event_id for e in index.read_all(3, 2)] == ["b-2", "a-2"]
    assert index.read_all(7, 10) == []


def test_try_calls_give_way_to_a_call_holding_the_index(index: ThreadIndex) -> None:
    index.ingest(interleaved()[:2])

    with held_by_another_thread(index):
        assert index.try_ingest(interleaved()[2:]) is None
        assert index.call_if_free(index.read_all, 0, 10) is None

    assert index.head() == 2  # the refused ingest did nothing
    stored = index.try_ingest(interleaved()[2:])
    assert stored is not None
    assert [e.position for e in stored] == [3, 4, 5, 6]
    page = index.call_if_free(index.read_all, 0, 10)
    assert page is not None
    assert [e.event_id for e in page] == [e.event_id for e in index.read_all(0, 10)]


def test_call_if_free_runs_reads_unless_another_thread_holds_the_index(
    index: ThreadIndex,
) -> None:
    index.ingest(interleaved())

    def lookup() -> tuple[dict[str, int], int]:  # calls back into the index (reentrant)
        return index.versions(["a", "b"]), len(index.find(["a-1", "b-3"]))

    assert index.call_if_free(lookup) == ({"a": 3, "b": 3}, 2)
    with held_by_another_thread(index):
        assert index.call_if_free(lookup) is None
    assert index.call_if_free(index.version, "a") == 3


def test_try_ingest_gives_way_to_another_process_writing(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    idx = ThreadIndex(path, CODEC)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        t0 = time.monotonic()
        assert idx.try_ingest(interleaved()) is None
        assert time.monotonic() - t0 < 1  # it did not wait for the 10 s busy timeout

        # a waiting ingest waits for the lock (the busy timeout is back after the try)
        threading.Timer(0.3, other.execute, ("COMMIT",)).start()
        stored = idx.ingest(interleaved())
        assert len(stored) == 6
        assert idx.try_ingest([record(0, 3, "a", 4)]) is not None
        assert idx.version("a") == 4
    finally:
        other.close()
        idx.close()


def test_find_locates_stored_events(index: ThreadIndex) -> None:
    index.ingest(interleaved())

    assert index.find(["b-2", "a-3", "nope"]) == {
        "b-2": Located("b", 2, 3, partition=1, offset=1),
        "a-3": Located("a", 3, 5, partition=0, offset=2),
    }
    assert index.find([]) == {}
    many = [f"missing-{i}" for i in range(1200)] + ["a-1"]
    assert index.find(many) == {"a-1": Located("a", 1, 1, partition=0, offset=0)}


def test_versions_of_many_threads_in_one_call(index: ThreadIndex) -> None:
    index.ingest(interleaved())

    assert index.versions(["a", "b", "nope"]) == {"a": 3, "b": 3, "nope": 0}
    assert index.versions([]) == {}
    many = [f"missing-{i}" for i in range(1200)] + ["b"]
    assert index.versions(many)["b"] == 3


def test_reopening_a_file_keeps_events_and_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    idx = ThreadIndex(path, CODEC)
    idx.ingest(interleaved()[:3])
    idx.close()
    idx.close()  # idempotent

    reopened = ThreadIndex(str(path), CODEC)
    try:
        assert reopened.checkpoints() == {0: 1, 1: 2}
        assert reopened.head() == 3
        stored = reopened.ingest(interleaved())
        assert [e.position for e in stored] == [4, 5, 6]
        assert [e.seq for e in reopened.read_thread("a")] == [1, 2, 3]
    finally:
        reopened.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x41474C49
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        assert con.execute("PRAGMA page_size").fetchone()[0] == 16384
    finally:
        con.close()


def test_an_index_file_made_with_another_page_size_keeps_it_and_works(tmp_path: Path) -> None:
    # Files created before the index chose 16 KiB pages have SQLite's 4 KiB ones.
    path = tmp_path / "index.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA page_size = 4096")
    con.execute("VACUUM")  # writes the empty file's header with that page size
    con.close()
    idx = ThreadIndex(path, CODEC)
    try:
        idx.ingest(interleaved())
        assert [e.seq for e in idx.read_thread("b")] == [1, 2, 3]
    finally:
        idx.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA page_size").fetchone()[0] == 4096
    finally:
        con.close()


def test_a_closed_index_refuses_calls(index: ThreadIndex) -> None:
    index.close()

    with pytest.raises(LogClosed):
        index.head()
    with pytest.raises(LogClosed):
        index.ingest([record(0, 0, "a", 1)])


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()

    with pytest.raises(CorruptLog, match="another application"):
        ThreadIndex(path, CODEC)


def test_an_embedded_log_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    SqliteStore(path, CODEC, fsync=False, max_event_bytes=1 << 20, busy_timeout_ms=1000).close()

    with pytest.raises(CorruptLog, match="embedded agentlog log"):
        ThreadIndex(path, CODEC)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)

    with pytest.raises(CorruptLog):
        ThreadIndex(path, CODEC)


def test_a_newer_index_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    ThreadIndex(path, CODEC).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 2")
    con.close()

    with pytest.raises(CorruptLog, match="format 2"):
        ThreadIndex(path, CODEC)
