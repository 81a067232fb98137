"""The thread index: a local SQLite read model of the ``agentlog.threads`` topic.

Reading one thread from Kafka would mean scanning a partition, so each ``KafkaEventLog``
keeps a :class:`ThreadIndex`, fed by its index consumer: the consumer hands over records
(partition, offset, value) as it fetches them and the index stores the decoded events with
their Kafka coordinates, together with a checkpoint of the next offset to consume per
partition, in the same transaction. ``read_thread``, ``read_all`` and the lookups that answer
appends are served from here.

The index is a cache: deleting the file and consuming the topic from the beginning rebuilds
it. Positions are local: events are numbered 1, 2, 3... in the order this index ingested
them (each partition's order preserved), so two indexes of one topic may number events
differently, but ``read_all(last.position + 1)`` resumes exactly within one index.

Tables::

    threads(tid INTEGER PRIMARY KEY, thread_id TEXT UNIQUE, tenant TEXT)
    events(position INTEGER PRIMARY KEY, tid, seq, partition, offset, event_id,
           occurred_at, body BLOB)
      UNIQUE INDEX (tid, seq)       -- reading a thread; one event per (thread, seq)
      INDEX (event_id)              -- answering a retried append
    checkpoints(partition INTEGER PRIMARY KEY, next_offset INTEGER)

Errors: :class:`IndexConflict` (an :class:`~eventstore.errors.EventStoreError`) when the
topic holds two different events for one (thread, seq); SQLite failures surface as
:class:`~eventstore.errors.StorageError` (``CorruptLog`` for a file that is not a thread
index), undecodable records as :class:`~eventstore.errors.CodecError`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from eventstore._sqlite import _translate, decode_prefix
from eventstore._sqlite_file import INDEX_APPLICATION_ID, claim, sqlite_locked
from eventstore.codec import Codec
from eventstore.envelope import RecordedEvent
from eventstore.errors import EventStoreError, LogClosed

INDEX_SCHEMA_VERSION = 1

_DDL = (
    "CREATE TABLE threads (tid INTEGER PRIMARY KEY, thread_id TEXT NOT NULL UNIQUE,"
    " tenant TEXT NOT NULL)",
    "CREATE TABLE events (position INTEGER PRIMARY KEY, tid INTEGER NOT NULL,"
    ' seq INTEGER NOT NULL, "partition" INTEGER NOT NULL, "offset" INTEGER NOT NULL,'
    " event_id TEXT NOT NULL, occurred_at INTEGER NOT NULL, body BLOB NOT NULL)",
    "CREATE UNIQUE INDEX events_thread_seq ON events (tid, seq)",
    "CREATE INDEX events_event_id ON events (event_id)",
    'CREATE TABLE checkpoints ("partition" INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL)',
)

_INSERT_EVENT = (
    'INSERT INTO events (position, tid, seq, "partition", "offset", event_id, occurred_at, body)'
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_CACHE_KIB = 256 * 1024  # SQLite page cache, at most (as the embedded log's default)
# Pages of 16 KiB rather than SQLite's 4 KiB: an ingest of 500 events (~300 KB of bodies)
# writes fewer, fuller pages to the WAL and splits fewer B-tree pages (measured, 60k
# events over 1000 threads: ingest 9.0-10.1 -> 7.3-7.4 us per event; reads unchanged).
_PAGE_SIZE = 16384
_BUSY_TIMEOUT_MS = 10_000  # waiting for another process's write lock, at most
_P = ParamSpec("_P")
_T = TypeVar("_T")
_TID_CACHE = 100_000  # thread ids whose row id is remembered (starts over when full)
_FIND_CHUNK = 500  # ids per query, well below SQLite's limit on bound parameters


class IndexConflict(EventStoreError):
    """The topic holds two different events for one (thread, seq).

    One thread has one writer, and a producer retry repeats the same ``event_id``; a
    different ``event_id`` at a stored (thread, seq) means two writers appended to the
    thread. Nothing of the batch being ingested was stored.
    """

    def __init__(
        self,
        thread_id: str,
        seq: int,
        stored_event_id: str,
        new_event_id: str,
        partition: int,
        offset: int,
    ) -> None:
        self.thread_id = thread_id
        self.seq = seq
        self.stored_event_id = stored_event_id
        self.new_event_id = new_event_id
        self.partition = partition
        self.offset = offset
        super().__init__(
            f"seq {seq} of thread {thread_id!r} is stored as event {stored_event_id!r}, "
            f"but partition {partition} offset {offset} holds event {new_event_id!r} "
            "at the same seq (two writers for one thread?)"
        )


class Located(NamedTuple):
    """Where the index holds an event: its thread and seq, its local position, and its
    Kafka coordinates in the threads topic."""

    thread_id: str
    seq: int
    position: int
    partition: int
    offset: int


class Indexed(NamedTuple):
    """An event stored by :meth:`ThreadIndex.ingest`: its id, thread, seq and position,
    and the partition and offset of its record."""

    event_id: str
    thread_id: str
    seq: int
    position: int
    partition: int
    offset: int


class ThreadIndex:
    """The thread index file of one ``KafkaEventLog``. Synchronous; see the module docstring.

    One connection is shared by all methods under a (reentrant) lock, so the index may be
    used from worker threads, one call at a time; the event loop uses :meth:`try_ingest`
    and :meth:`call_if_free`, which never wait for the lock. Every :meth:`ingest` is one
    transaction: after a crash the file holds whole batches and checkpoints that match them.

    Args:
        path: The database file (created if missing); ``":memory:"`` for a throwaway index.
        codec: Codec that decodes the topic's record values.

    Raises:
        CorruptLog: the file is not a SQLite database, or is not a thread index (another
            application's database, or an embedded log).
        StorageError: the file cannot be opened or set up.
    """

    def __init__(self, path: Path | str, codec: Codec) -> None:
        self.location = str(path)
        self.codec = codec
        self._lock = threading.RLock()  # reentrant: see call_if_free
        self._con: sqlite3.Connection | None = None
        self._tids: dict[str, int] = {}  # thread id -> row id, committed ones only
        try:
            con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _translate(exc, self.location, "opening the thread index") from exc
        try:
            self._init_schema(con)
        except BaseException as exc:
            con.close()
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, self.location, "opening the thread index") from exc
            raise
        self._con = con

    def _init_schema(self, con: sqlite3.Connection) -> None:
        # The index is a cache of the topic: a crash may lose its last transactions (they
        # are ingested again from the checkpoint), so it never waits for a sync.
        con.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        con.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        con.execute("PRAGMA synchronous = OFF")
        claim(
            con,
            self.location,
            application_id=INDEX_APPLICATION_ID,
            format_version=INDEX_SCHEMA_VERSION,
            ddl=_DDL,
            rebuild_hint=" (delete the file to rebuild it from the topic)",
            page_size=_PAGE_SIZE,
        )

    def call_if_free(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """``fn(*args, **kwargs)`` holding the index, or None at once if another thread
        holds it (a read or an ingest in a worker thread).

        For reads from the event loop: WAL readers never wait for the file's lock, so a
        read that finds the index free runs without blocking, and the caller sends the
        others to a worker thread. ``fn`` may call this index's methods (the lock is
        reentrant).
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return fn(*args, **kwargs)
        finally:
            self._lock.release()

    def _open(self) -> sqlite3.Connection:
        if self._con is None:
            raise LogClosed(f"thread index {self.location!r}", "closed")
        return self._con

    def close(self) -> None:
        """Close the file (idempotent). Later calls raise :class:`LogClosed`."""
        with self._lock:
            con, self._con = self._con, None
            if con is not None:
                con.close()

    # --- writing -----------------------------------------------------------------------

    def ingest(self, records: Sequence[tuple[int, int, bytes]]) -> list[Indexed]:
        """Store consumed records and advance the checkpoints, in one transaction.

        A record below its partition's checkpoint was ingested before and is skipped. An
        event whose (thread, seq) is stored with the same ``event_id`` is a redelivery (a
        producer retry) and is skipped too; its offset still advances the checkpoint.

        Args:
            records: ``(partition, offset, value)`` as consumed, in offset order within
                each partition; partitions may interleave.

        Returns:
            The newly stored events, in ingest order, numbered with gap-free positions
            after the previous :meth:`head`.

        Raises:
            IndexConflict: a record holds a different event at a stored (thread, seq).
            CodecError: a record value cannot be decoded.
            StorageError: SQLite failed.
            LogClosed: the index was closed.

        On any error nothing of the batch is stored and the checkpoints do not move.
        """
        stored = self._ingest(records, wait=True)
        assert stored is not None  # waiting always ingests
        return stored

    def try_ingest(self, records: Sequence[tuple[int, int, bytes]]) -> list[Indexed] | None:
        """:meth:`ingest`, unless it would have to wait: for another call holding the index
        (a read in a worker thread) or for another process holding the file's write lock.
        Then it returns None having done nothing, and the caller ingests in a worker
        thread; so the event loop may call it without ever blocking on a lock.

        Raises:
            The same as :meth:`ingest`.
        """
        return self.call_if_free(self._ingest, records, wait=False)

    def _ingest(
        self, records: Sequence[tuple[int, int, bytes]], *, wait: bool
    ) -> list[Indexed] | None:
        with self._lock:
            con = self._open()
            try:
                if not self._begin(con, wait):
                    return None
                new_tids: dict[str, int] = {}
                try:
                    con.execute("SAVEPOINT bulk")
                    try:
                        stored = self._stage(con, records, new_tids, bulk=True)
                        con.execute("RELEASE bulk")
                    except sqlite3.IntegrityError:  # a redelivery or a conflict: row by row
                        con.execute("ROLLBACK TO bulk")
                        con.execute("RELEASE bulk")
                        new_tids.clear()
                        stored = self._stage(con, records, new_tids, bulk=False)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                self._remember_tids(new_tids)
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, "ingesting records") from exc
        return stored

    @staticmethod
    def _begin(con: sqlite3.Connection, wait: bool) -> bool:
        """Begin a write transaction; False if the file is locked and ``wait`` is False."""
        if wait:
            con.execute("BEGIN IMMEDIATE")
            return True
        con.execute("PRAGMA busy_timeout = 0")
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if sqlite_locked(exc):
                return False
            raise
        finally:
            con.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return True

    def _remember_tids(self, tids: dict[str, int]) -> None:
        """Keep committed thread ids' row ids (a thread's row never changes once committed,
        whichever process wrote it), so ingests need not look them up again."""
        if len(self._tids) + len(tids) > _TID_CACHE:
            self._tids.clear()
        self._tids.update(tids)

    def _stage(
        self,
        con: sqlite3.Connection,
        records: Sequence[tuple[int, int, bytes]],
        new_tids: dict[str, int],
        *,
        bulk: bool,
    ) -> list[Indexed]:
        """Write ``records`` into the open transaction; return the events stored.

        ``new_tids`` collects the row ids of the threads looked up or added, for
        :meth:`_remember_tids` once the transaction committed.

        Only the envelope's leading fields are read (:meth:`Codec.peek`): the index checks
        an event's header and identity, a read decodes the rest. ``bulk`` inserts every
        event in one statement and raises ``sqlite3.IntegrityError`` if any (thread, seq)
        is taken (the caller then rolls back and stages row by row, which tells a
        redelivery from a conflict); otherwise each event is looked up first.
        """
        next_offsets = self._read_checkpoints(con)
        moved: dict[int, int] = {}
        known = self._tids
        position = con.execute("SELECT max(position) FROM events").fetchone()[0] or 0
        peek = self.codec.peek
        stored: list[Indexed] = []
        rows: list[tuple[int, int, int, int, int, str, int, bytes]] = []
        for partition, offset, value in records:
            if offset < next_offsets.get(partition, 0):
                continue
            next_offsets[partition] = moved[partition] = offset + 1
            key = peek(value)
            tid = known.get(key.thread_id) or new_tids.get(key.thread_id)
            if tid is None:
                tid = new_tids[key.thread_id] = self._tid(con, key.thread_id, key.tenant)
            if not bulk:
                row = con.execute(
                    "SELECT event_id FROM events WHERE tid = ? AND seq = ?", (tid, key.seq)
                ).fetchone()
                if row is not None:
                    if row[0] == key.event_id:
                        continue
                    raise IndexConflict(
                        key.thread_id, key.seq, row[0], key.event_id, partition, offset
                    )
            position += 1
            row_values = (
                position,
                tid,
                key.seq,
                partition,
                offset,
                key.event_id,
                key.occurred_ms,
                value,
            )
            if bulk:
                rows.append(row_values)
            else:  # one by one, so a repeat later in the same batch finds this row
                con.execute(_INSERT_EVENT, row_values)
            stored.append(
                Indexed(key.event_id, key.thread_id, key.seq, position, partition, offset)
            )
        if rows:
            con.executemany(_INSERT_EVENT, rows)
        con.executemany(
            'INSERT INTO checkpoints ("partition", next_offset) VALUES (?, ?)'
            ' ON CONFLICT ("partition") DO UPDATE SET next_offset = excluded.next_offset',
            sorted(moved.items()),
        )
        return stored

    def _tid(self, con: sqlite3.Connection, thread_id: str, tenant: str) -> int:
        row = con.execute("SELECT tid FROM threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is not None:
            return int(row[0])
        cur = con.execute(
            "INSERT INTO threads (thread_id, tenant) VALUES (?, ?)", (thread_id, tenant)
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def _read_checkpoints(con: sqlite3.Connection) -> dict[int, int]:
        return {
            int(p): int(n)
            for p, n in con.execute('SELECT "partition", next_offset FROM checkpoints')
        }

    # --- reading -----------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object], doing: str) -> list[Any]:
        """Run one read under the lock; rows as sqlite3 returns them (hence ``Any``)."""
        with self._lock:
            con = self._open()
            try:
                return con.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, doing) from exc

    def checkpoints(self) -> dict[int, int]:
        """Next offset to consume, per partition ingested so far.

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        rows = self._query(
            'SELECT "partition", next_offset FROM checkpoints', (), "reading checkpoints"
        )
        return {int(p): int(n) for p, n in rows}

    def read_thread(
        self,
        thread_id: str,
        from_seq: int = 1,
        to_seq: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Events of ``thread_id`` with ``from_seq <= seq <= to_seq``, in ``seq`` order.

        Args:
            thread_id: The thread; an unknown thread has no events (empty list).
            from_seq: First seq to return.
            to_seq: Last seq to return; ``None`` for the thread's end.
            until: Stop before the first event that occurred after this time, so the
                result is a prefix of the range (the state "as of" ``until``).

        Raises:
            StorageError: SQLite failed.
            CodecError: a stored event cannot be decoded.
            LogClosed: the index was closed.
        """
        return decode_prefix(self.codec, self.thread_rows(thread_id, from_seq, to_seq), until)

    def thread_rows(
        self, thread_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> list[tuple[int, int, bytes]]:
        """The ``(position, occurred_at ms, body)`` rows :meth:`read_thread` decodes.

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        rows: list[tuple[int, int, bytes]] = self._query(
            "SELECT e.position, e.occurred_at, e.body FROM threads t JOIN events e"
            " ON e.tid = t.tid WHERE t.thread_id = ? AND e.seq >= ? AND e.seq <= ?"
            " ORDER BY e.seq",
            (thread_id, from_seq, to_seq if to_seq is not None else 1 << 62),
            f"reading thread {thread_id!r}",
        )
        return rows

    def read_all(self, from_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with ``position >= from_position``, in position order.

        Raises:
            StorageError: SQLite failed.
            CodecError: a stored event cannot be decoded.
            LogClosed: the index was closed.
        """
        decode = self.codec.decode
        return [decode(body, pos) for pos, body in self.all_rows(from_position, limit)]

    def all_rows(self, from_position: int = 0, limit: int = 1000) -> list[tuple[int, bytes]]:
        """The ``(position, body)`` rows :meth:`read_all` decodes.

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        rows: list[tuple[int, bytes]] = self._query(
            "SELECT position, body FROM events WHERE position >= ? ORDER BY position LIMIT ?",
            (from_position, limit),
            "reading the index",
        )
        return rows

    def version(self, thread_id: str) -> int:
        """The thread's version: ``seq`` of its last event, 0 when it has none.

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        rows = self._query(
            "SELECT max(e.seq) FROM threads t JOIN events e ON e.tid = t.tid WHERE t.thread_id = ?",
            (thread_id,),
            f"reading thread {thread_id!r}",
        )
        return int(rows[0][0] or 0)

    def head(self) -> int:
        """Position of the last event ingested (0 when the index is empty).

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        rows = self._query("SELECT max(position) FROM events", (), "reading the index head")
        return int(rows[0][0] or 0)

    def threads(self, limit: int, after: str) -> list[tuple[str, str, int, int]]:
        """Threads ordered by id after ``after``: (thread_id, tenant, version, first position).

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        rows = self._query(
            "SELECT t.thread_id, t.tenant,"
            " (SELECT max(seq) FROM events e WHERE e.tid = t.tid),"
            " (SELECT min(position) FROM events e WHERE e.tid = t.tid)"
            " FROM threads t WHERE t.thread_id > ? ORDER BY t.thread_id LIMIT ?",
            (after, limit),
            "listing threads",
        )
        return [(str(r[0]), str(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    def find(self, event_ids: Sequence[str]) -> dict[str, Located]:
        """Where stored events are, to answer a retried append.

        Args:
            event_ids: Event ids to look up; unknown ones are left out of the result.

        Returns:
            ``event_id -> Located``; should an id be stored twice, its first position.

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        ids = sorted(set(event_ids))
        found: dict[str, Located] = {}
        for i in range(0, len(ids), _FIND_CHUNK):
            chunk = ids[i : i + _FIND_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                'SELECT e.event_id, t.thread_id, e.seq, e.position, e."partition", e."offset"'
                " FROM events e JOIN threads t ON t.tid = e.tid"
                f" WHERE e.event_id IN ({marks}) ORDER BY e.position",
                chunk,
                "looking up event ids",
            )
            for event_id, thread_id, seq, pos, partition, offset in rows:
                found.setdefault(
                    str(event_id),
                    Located(str(thread_id), int(seq), int(pos), int(partition), int(offset)),
                )
        return found

    def versions(self, thread_ids: Sequence[str]) -> dict[str, int]:
        """The version of each thread (0 for a thread with no events), in one query per chunk.

        Raises:
            StorageError: SQLite failed.
            LogClosed: the index was closed.
        """
        ids = sorted(set(thread_ids))
        found = dict.fromkeys(ids, 0)
        for i in range(0, len(ids), _FIND_CHUNK):
            chunk = ids[i : i + _FIND_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT t.thread_id, (SELECT max(e.seq) FROM events e WHERE e.tid = t.tid)"
                f" FROM threads t WHERE t.thread_id IN ({marks})",
                chunk,
                "reading thread versions",
            )
            for thread_id, version in rows:
                found[str(thread_id)] = int(version or 0)
        return found
