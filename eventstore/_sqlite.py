"""Synchronous SQLite storage behind :class:`eventstore.embedded.EmbeddedEventLog`.

One :class:`SqliteStore` owns a writer connection (used by one thread at a time: the log's
single writer task hands it whole batches) and a reader connection guarded by a lock.

The file format (tables, statements, upgrades) is in :mod:`eventstore._sqlite_format`.

Versions and thread ids are cached between batches; ``PRAGMA data_version`` tells when
another process wrote, and the caches are dropped then.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from eventstore._sqlite_file import claim, sqlite_locked
from eventstore._sqlite_format import (
    APPLICATION_ID,
    DDL,
    INSERT_EVENTS,
    INSERT_RECENT,
    RECENT_ROWS,
    SCHEMA_VERSION,
    SETTLE,
    SETTLE_ROWS,
    SETTLED_ROWS,
    UPGRADES,
    VERSION_OF_T,
    VERSION_OF_THREAD,
    VERSION_OF_TID,
    event_key,
)
from eventstore.codec import HEADER_SIZE, Codec, PreparedEvent
from eventstore.decide import Duplicate, Rejected, StoredEvent, decide
from eventstore.envelope import AppendResult, RecordedEvent
from eventstore.errors import (
    CorruptLog,
    EventStoreError,
    EventTooLarge,
    StorageError,
    StorageUnavailable,
)

log = logging.getLogger(__name__)


def _event_id_of(body: bytes) -> str:
    """Read the event_id (the envelope's first field) without decoding the rest."""
    shift = 0
    acc = 0
    i = HEADER_SIZE
    while True:
        b = body[i]
        i += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    n = (acc >> 1) ^ -(acc & 1)
    return bytes(body[i : i + n]).decode("utf-8")


@dataclasses.dataclass(slots=True)
class AppendRequest:
    """One append waiting in a batch; the writer fills ``result`` or ``error``."""

    thread_id: str
    tenant: str
    prepared: Sequence[PreparedEvent]
    occurred_ms: Sequence[int]
    expected_version: int | None
    keys: list[int] = dataclasses.field(default_factory=list)
    result: AppendResult | None = None
    error: EventStoreError | None = None


_Hit = tuple[str, int, int, int]  # (event_id, tid, seq, position) of a stored event
_Hits = dict[int, list[_Hit]]
_REPEATS = 1 << 64  # marker key (outside the int64 range): the batch repeats an event key


class StagedBatch:
    """Appends written into an open transaction, waiting for :meth:`SqliteStore.finish`."""

    __slots__ = (
        "data_version",
        "failure",
        "hits",
        "new_tids",
        "recent",
        "requests",
        "rows",
        "versions",
    )

    def __init__(self, requests: Sequence[AppendRequest]) -> None:
        self.requests = requests
        self.recent = -1  # rows in thread_index_recent once committed
        self.failure: StorageError | None = None
        self.data_version = -1
        self.hits: _Hits = {}
        self.new_tids: dict[str, int] = {}
        self.versions: dict[int, int] = {}
        self.rows: list[tuple[int, int, int, int, int, bytes]] = []

    def lookup(self, key: int, event_id: str) -> _Hit | None:
        for hit in self.hits.get(key, ()):
            if hit[0] == event_id:
                return hit
        return None


def decode_prefix(
    codec: Codec, rows: Sequence[tuple[int, int, bytes]], until: datetime | None
) -> list[RecordedEvent]:
    """Decode ``(position, occurred_at ms, body)`` rows of one thread in ``seq`` order, up to
    the first event that occurred after ``until``: always a prefix, the thread "as of" then."""
    decode = codec.decode
    if until is None:
        return [decode(body, pos) for pos, _, body in rows]
    limit_ms = until.timestamp() * 1000
    out = []
    for pos, occurred, body in rows:
        if occurred > limit_ms:
            break
        out.append(decode(body, pos))
    return out


def _translate(exc: sqlite3.Error, location: str, doing: str) -> StorageError:
    text = str(exc)
    if sqlite_locked(exc):
        return StorageUnavailable(f"{location}: database stayed locked while {doing}: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "encrypted" in text
    ):
        return CorruptLog(location, f"not a readable SQLite database ({text})")
    return StorageError(f"{location}: SQLite failed while {doing}: {text}")


class SqliteStore:
    """The tables of one embedded log file. Not async; see the module docstring.

    Args:
        path: The database file (created if missing).
        codec: Codec that decodes stored bodies.
        fsync: Sync every commit group to stable storage (power-loss durability) when
            True; otherwise a commit survives a crash of the process but not of the machine.
        max_event_bytes: Largest encoded event accepted.
        busy_timeout_ms: How long to wait for another process's lock.
        cache_mib: Page cache of each of the two connections, at most (grows as used).
        settle_rows: Rows of the recent part of the thread index that a commit moves
            into the settled part (see :mod:`eventstore._sqlite_format`; the log checks it).

    Raises:
        CorruptLog: the file is not a SQLite database, or is another application's.
        StorageError: the file cannot be opened or set up.
    """

    def __init__(
        self,
        path: Path,
        codec: Codec,
        *,
        fsync: bool,
        max_event_bytes: int,
        busy_timeout_ms: int,
        cache_mib: int = 256,
        settle_rows: int = SETTLE_ROWS,
    ) -> None:
        self.path = path
        self.settle_rows = settle_rows
        self._recent = -1  # rows in thread_index_recent as of the last commit; -1: unknown
        self.location = str(path)
        self.codec = codec
        self.max_event_bytes = max_event_bytes
        self._read_lock = threading.Lock()
        self._tids: dict[str, int] = {}
        self._versions: dict[int, int] = {}
        self._data_version = -1
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._busy_now = self._busy_timeout_ms
        self._cache_kib = int(cache_mib) * 1024
        try:
            self._w = self._connect(busy_timeout_ms, fsync)
            self._init_schema()
            self._r = self._connect(busy_timeout_ms, fsync)
        except sqlite3.Error as exc:
            raise _translate(exc, self.location, "opening the log") from exc

    def _connect(self, busy_timeout_ms: int, fsync: bool) -> sqlite3.Connection:
        con = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        con.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # The writer touches one (tid, seq) index leaf per event all over the index; once
        # table pages crowd those out of a small cache, appends slow down (measured at
        # 200k events: ~11.5k/s with 64 MiB against ~15k/s with 256 MiB).
        con.execute(f"PRAGMA cache_size = -{self._cache_kib}")
        con.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        # Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: each checkpoint writes
        # index pages scattered over the file and syncs it, inside some commit; fewer,
        # larger checkpoints kept appends at ~15k/s to 200k events where the default let
        # them sink to ~12k/s as the file grew.
        con.execute("PRAGMA wal_autocheckpoint = 10000")
        return con

    def _init_schema(self) -> None:
        claim(
            self._w,
            self.location,
            application_id=APPLICATION_ID,
            format_version=SCHEMA_VERSION,
            ddl=DDL,
            upgrades=UPGRADES,
        )

    def close(self) -> None:
        """Close both connections (idempotent)."""
        for con in (getattr(self, "_w", None), getattr(self, "_r", None)):
            if con is not None:
                con.close()

    # --- writing -----------------------------------------------------------------------

    def stage(self, requests: Sequence[AppendRequest], wait: bool = True) -> StagedBatch | None:
        """Begin a transaction and write ``requests`` into it, without committing.

        A request that fails its version or idempotency check gets its error and the others
        go on. :meth:`finish` must follow (it commits, or on failure fails every request).

        Args:
            requests: The batch, in arrival order.
            wait: Wait up to the busy timeout for another process's write lock. When False
                and the file is locked, return None at once having done nothing.

        Returns:
            The staged batch, or None (locked, ``wait`` False).
        """
        con = self._w
        batch = StagedBatch(requests)
        try:
            self._set_busy_timeout(self._busy_timeout_ms if wait else 0)
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not wait and sqlite_locked(exc):
                    return None
                raise
        except sqlite3.Error as exc:
            batch.failure = _translate(exc, self.location, "starting a write")
            return batch
        try:
            batch.data_version = con.execute("PRAGMA data_version").fetchone()[0]
            if batch.data_version != self._data_version:
                self._tids.clear()
                self._versions.clear()
                self._recent = -1
            recent = self._recent
            if recent < 0:
                recent = con.execute("SELECT count(*) FROM thread_index_recent").fetchone()[0]
            if recent >= self.settle_rows:
                for statement in SETTLE:
                    con.execute(statement)
                recent = 0
            position = con.execute("SELECT max(position) FROM events").fetchone()[0] or 0
            batch.hits = self._existing(con, requests)
            for req in requests:
                try:
                    position = self._apply(con, req, position, batch)
                except EventStoreError as exc:
                    req.error = exc
            rows = batch.rows
            con.executemany(INSERT_EVENTS, rows)
            con.executemany(INSERT_RECENT, [(r[0], r[1], r[2]) for r in rows])
            batch.recent = recent + len(rows)
        except sqlite3.Error as exc:
            batch.failure = _translate(exc, self.location, "writing appends")
        return batch

    def finish(self, batch: StagedBatch) -> None:
        """Commit a staged batch (the sync, if configured, happens here).

        Safe to run in a worker thread while the event loop goes on: the writer
        connection is used by nobody else until this returns. On failure the transaction
        is rolled back and every request of the batch gets the error.
        """
        con = self._w
        if batch.failure is None:
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                batch.failure = _translate(exc, self.location, "committing appends")
        if batch.failure is not None:
            if con.in_transaction:
                con.execute("ROLLBACK")
            self._tids.clear()
            self._versions.clear()
            self._data_version = -1
            self._recent = -1
            for req in batch.requests:
                req.result = None
                req.error = batch.failure
            return
        self._data_version = batch.data_version
        self._recent = batch.recent
        self._tids.update(batch.new_tids)
        self._versions.update(batch.versions)

    def rollback(self) -> None:
        """Abandon any open write transaction and forget cached versions (after a failure)."""
        self._tids.clear()
        self._versions.clear()
        self._data_version = -1
        self._recent = -1
        try:
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("rollback of %s failed", self.location, exc_info=True)

    def _set_busy_timeout(self, ms: int) -> None:
        if ms != self._busy_now:
            self._w.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_now = ms

    def _existing(self, con: sqlite3.Connection, requests: Sequence[AppendRequest]) -> _Hits:
        """Stored events whose key matches an event of the batch: key -> [(id, tid, seq, pos)].

        Also computes each request's keys, and notes whether the batch repeats a key.
        """
        all_keys: list[int] = []
        for req in requests:
            req.keys = [event_key(p.event_id) for p in req.prepared]
            all_keys.extend(req.keys)
        keys = sorted(set(all_keys))
        found: _Hits = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, tid, seq, pos, body in con.execute(
                "SELECT event_key, tid, seq, position, substr(body, 1, 400) FROM events"
                f" WHERE event_key IN ({marks})",
                chunk,
            ):
                found.setdefault(key, []).append((_event_id_of(body), tid, seq, pos))
        if len(keys) != len(all_keys):
            found[_REPEATS] = []
        return found

    def _tid(self, con: sqlite3.Connection, thread_id: str, batch: StagedBatch) -> int | None:
        tid = self._tids.get(thread_id) or batch.new_tids.get(thread_id)
        if tid is None:
            row = con.execute(
                "SELECT tid FROM threads WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            if row is not None:
                tid = int(row[0])
                self._tids[thread_id] = tid
        return tid

    def _version(self, con: sqlite3.Connection, tid: int | None, batch: StagedBatch) -> int:
        if tid is None:
            return 0
        v = batch.versions.get(tid)
        if v is None:
            v = self._versions.get(tid)
        if v is None:
            v = int(con.execute(VERSION_OF_TID, (tid,)).fetchone()[0])
            self._versions[tid] = v
        return v

    def _apply(
        self, con: sqlite3.Connection, req: AppendRequest, position: int, batch: StagedBatch
    ) -> int:
        """Check and stage one request; return the last position used."""
        tid = self._tid(con, req.thread_id, batch)
        current = self._version(con, tid, batch)
        keys = req.keys
        stored = self._stored(con, req, tid, batch) if batch.hits else {}
        decision = decide(
            req.thread_id, current, req.expected_version, [p.event_id for p in req.prepared], stored
        )
        if isinstance(decision, Rejected):
            raise decision.error
        if isinstance(decision, Duplicate):
            req.result = AppendResult(
                thread_id=req.thread_id,
                positions=decision.positions,
                first_seq=decision.first_seq,
                version=decision.version,
                deduplicated=True,
            )
            return position
        if tid is None:
            cur = con.execute(
                "INSERT INTO threads (thread_id, tenant) VALUES (?, ?)", (req.thread_id, req.tenant)
            )
            tid = int(cur.lastrowid or 0)
            batch.new_tids[req.thread_id] = tid
        finish = self.codec.finish
        limit = self.max_event_bytes
        rows = []
        seq = current
        for prepared, key, occurred in zip(req.prepared, keys, req.occurred_ms, strict=True):
            seq += 1
            position += 1
            body = finish(prepared, seq)
            if len(body) > limit:
                raise EventTooLarge(prepared.type, req.thread_id, len(body), limit)
            rows.append((position, tid, seq, key, occurred, body))
        batch.rows.extend(rows)
        if _REPEATS in batch.hits:
            for row, prepared in zip(rows, req.prepared, strict=True):
                batch.hits.setdefault(row[3], []).append((prepared.event_id, tid, row[2], row[0]))
        batch.versions[tid] = seq
        req.result = AppendResult(
            thread_id=req.thread_id,
            positions=tuple([row[0] for row in rows]),
            first_seq=current + 1,
            version=seq,
        )
        return position

    def _stored(
        self, con: sqlite3.Connection, req: AppendRequest, tid: int | None, batch: StagedBatch
    ) -> dict[str, StoredEvent]:
        """Where the request's event ids were stored before (in the file or this batch)."""
        stored = {}
        for key, prepared in zip(req.keys, req.prepared, strict=True):
            hit = batch.lookup(key, prepared.event_id)
            if hit is not None:
                _, hit_tid, seq, position = hit
                thread = req.thread_id if hit_tid == tid else self._thread_name(con, hit_tid)
                stored[prepared.event_id] = StoredEvent(thread, seq, position)
        return stored

    def _thread_name(self, con: sqlite3.Connection, tid: int) -> str:
        row = con.execute("SELECT thread_id FROM threads WHERE tid = ?", (tid,)).fetchone()
        return str(row[0]) if row is not None else f"(thread #{tid})"

    # --- reading -----------------------------------------------------------------------

    def read_thread(
        self, thread_id: str, from_seq: int, to_seq: int | None, until: datetime | None
    ) -> list[RecordedEvent]:
        """Events of ``thread_id`` with ``from_seq <= seq <= to_seq`` in ``seq`` order, cut
        before the first event that occurred after ``until``."""
        return decode_prefix(self.codec, self.thread_rows(thread_id, from_seq, to_seq), until)

    def thread_rows(
        self, thread_id: str, from_seq: int, to_seq: int | None
    ) -> list[tuple[int, int, bytes]]:
        """The ``(position, occurred_at ms, body)`` rows :meth:`read_thread` decodes."""
        with self._read_lock:
            try:
                row = self._r.execute(
                    "SELECT tid FROM threads WHERE thread_id = ?", (thread_id,)
                ).fetchone()
                if row is None:
                    return []
                args = (row[0], from_seq, to_seq if to_seq is not None else 1 << 62)
                self._r.execute("BEGIN")  # both parts of the index from one snapshot
                try:
                    rows = self._r.execute(SETTLED_ROWS, args).fetchall()
                    rows += self._r.execute(RECENT_ROWS, args).fetchall()
                finally:
                    self._r.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, f"reading thread {thread_id!r}") from exc
        return rows

    def read_all(self, from_position: int, limit: int) -> list[RecordedEvent]:
        """Up to ``limit`` events with ``position >= from_position``, in position order."""
        decode = self.codec.decode
        return [decode(body, pos) for pos, body in self.all_rows(from_position, limit)]

    def all_rows(self, from_position: int, limit: int) -> list[tuple[int, bytes]]:
        """The ``(position, body)`` rows :meth:`read_all` decodes."""
        with self._read_lock:
            try:
                rows = self._r.execute(
                    "SELECT position, body FROM events WHERE position >= ? ORDER BY position"
                    " LIMIT ?",
                    (from_position, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, "reading the log") from exc
        return rows

    def read_event(self, event_id: str) -> RecordedEvent | None:
        """The stored event with this id, or ``None``."""
        with self._read_lock:
            try:
                rows = self._r.execute(
                    "SELECT position, body FROM events WHERE event_key = ?", (event_key(event_id),)
                ).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, f"looking up event {event_id!r}") from exc
        for position, body in rows:
            if _event_id_of(body) == event_id:
                return self.codec.decode(body, position)
        return None

    def version(self, thread_id: str) -> int:
        """The thread's version (0 when it has no events)."""
        with self._read_lock:
            try:
                row = self._r.execute(VERSION_OF_THREAD, (thread_id,)).fetchone()
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, f"reading thread {thread_id!r}") from exc
        return 0 if row is None else int(row[0])

    def head(self) -> int:
        """Position of the last event in the log (0 when empty)."""
        with self._read_lock:
            try:
                row = self._r.execute("SELECT max(position) FROM events").fetchone()
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, "reading the log head") from exc
        return int(row[0] or 0)

    def threads(self, limit: int, after: str) -> list[tuple[str, str, int, int]]:
        """Threads ordered by id after ``after``: (thread_id, tenant, version, first position)."""
        with self._read_lock:
            try:
                return [
                    (str(r[0]), str(r[1]), int(r[2] or 0), int(r[3] or 0))
                    for r in self._r.execute(
                        f"SELECT t.thread_id, t.tenant, ({VERSION_OF_T}),"
                        " coalesce((SELECT position FROM thread_index WHERE tid = t.tid"
                        " ORDER BY seq LIMIT 1), (SELECT position FROM thread_index_recent"
                        " WHERE tid = t.tid ORDER BY seq LIMIT 1))"
                        " FROM threads t WHERE t.thread_id > ? ORDER BY t.thread_id LIMIT ?",
                        (after, limit),
                    )
                ]
            except sqlite3.Error as exc:
                raise _translate(exc, self.location, "listing threads") from exc
