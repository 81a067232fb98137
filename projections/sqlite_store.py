"""``SqliteSnapshotStore``: snapshots and checkpoints in a SQLite file (embedded default).

One connection, used from worker threads one call at a time (calls are short; WAL lets
other processes read meanwhile). Several processes may share the file: SQLite's lock
serialises their writes. Commits use ``synchronous=NORMAL``: a snapshot lost to a power
cut is rebuilt from the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from eventstore import SNAPSHOT_APPLICATION_ID, EventStoreError, claim_sqlite_file, sqlite_locked
from projections.errors import ProjectionClosed, SnapshotStoreError, SnapshotStoreUnavailable
from projections.serial import Snapshot, saving

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
T = TypeVar("T")

_DDL = (
    "CREATE TABLE snapshots (thread_id TEXT NOT NULL, rules TEXT NOT NULL,"
    " seq INTEGER NOT NULL, high_time INTEGER, format INTEGER NOT NULL,"
    " checksum TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (thread_id, rules, seq))"
    " WITHOUT ROWID",
    "CREATE TABLE checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    "CREATE TABLE chunks (digest TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID",
)


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class SqliteSnapshotStore:
    """Snapshots in a SQLite file.

    Args:
        path: The file; created with its folder if missing.
        busy_timeout: Seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._state = "unopened"

    def __repr__(self) -> str:
        return f"SqliteSnapshotStore({str(self.path)!r}, {self._state})"

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise ProjectionClosed(repr(self), f"{self._state} and cannot be reopened")
        self._state = "opening"
        try:
            self._con = await anyio.to_thread.run_sync(self._open)
        except BaseException:
            self._state = "closed"
            raise
        self._state = "open"
        log.info("opened snapshot store %s", self.path)
        return self

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_ms / 1000,
            )
        except (OSError, sqlite3.Error) as exc:
            raise SnapshotStoreUnavailable(str(self.path), f"cannot open: {exc}") from exc
        try:
            claim_sqlite_file(
                con,
                str(self.path),
                application_id=SNAPSHOT_APPLICATION_ID,
                format_version=FORMAT_VERSION,
                ddl=_DDL,
                rebuild_hint=" (snapshots are a cache: delete the file to rebuild it)",
            )
            con.execute("PRAGMA synchronous = NORMAL")
        except EventStoreError as exc:
            con.close()
            raise SnapshotStoreError(str(self.path), str(exc)) from exc
        except sqlite3.Error as exc:
            con.close()
            raise SnapshotStoreError(str(self.path), f"not a usable SQLite file: {exc}") from exc
        return con

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the file. Idempotent."""
        con, self._con = self._con, None
        self._state = "closed"
        if con is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close, con)

    def _close(self, con: sqlite3.Connection) -> None:
        with self._lock:
            con.close()

    async def _call(self, doing: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the connection in a worker thread, one call at a time, with
        sqlite3's errors translated (a locked or busy file is retriable)."""
        if self._con is None:
            raise ProjectionClosed(repr(self), self._state)
        con = self._con

        def call() -> T:
            with self._lock:
                try:
                    return work(con)
                except sqlite3.OperationalError as exc:
                    if sqlite_locked(exc):
                        raise SnapshotStoreUnavailable(str(self.path), f"{doing}: {exc}") from exc
                    raise SnapshotStoreError(str(self.path), f"{doing}: {exc}") from exc
                except sqlite3.Error as exc:
                    raise SnapshotStoreError(str(self.path), f"{doing}: {exc}") from exc

        return await anyio.to_thread.run_sync(call)

    async def _run(self, doing: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return await self._call(doing, lambda con: con.execute(sql, params).fetchall())

    async def _in_transaction(self, doing: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`_call` of ``work`` inside one write transaction (rolled back on failure)."""

        def transaction(con: sqlite3.Connection) -> T:
            con.execute("BEGIN IMMEDIATE")
            try:
                result = work(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return result

        return await self._call(doing, transaction)

    async def _transaction(
        self, doing: str, steps: list[tuple[str, list[tuple[Any, ...]]]]
    ) -> None:
        def work(con: sqlite3.Connection) -> None:
            for statement, rows in steps:
                if rows:
                    con.executemany(statement, rows)

        await self._in_transaction(doing, work)

    async def save(self, snapshot: Snapshot) -> None:
        await self.save_many([snapshot])

    async def save_many(self, snapshots: Sequence[Snapshot]) -> None:
        if not snapshots:
            return
        doing = saving(snapshots)
        rows = [
            (
                s.thread_id,
                s.rules_digest,
                s.seq,
                _ms(s.high_time),
                s.format,
                s.checksum,
                s.body,
            )
            for s in snapshots
        ]
        chunks = [item for s in snapshots for item in s.chunks.items()]
        await self._transaction(
            doing,
            [
                ("INSERT OR IGNORE INTO chunks VALUES (?, ?)", chunks),
                ("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)", rows),
            ],
        )

    async def load_chunks(self, digests: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        wanted = sorted(set(digests))
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            rows = await self._run(
                f"reading {len(part)} snapshot chunks",
                f"SELECT digest, body FROM chunks WHERE digest IN ({','.join('?' * len(part))})",
                tuple(part),
            )
            found.update((str(d), bytes(b)) for d, b in rows)
        return found

    async def latest(
        self,
        thread_id: str,
        rules_digest: str,
        *,
        max_seq: int | None = None,
        until: datetime | None = None,
    ) -> Snapshot | None:
        sql = (
            "SELECT seq, high_time, format, checksum, body FROM snapshots"
            " WHERE thread_id = ? AND rules = ? AND seq <= ?"
        )
        params: tuple[Any, ...] = (
            thread_id,
            rules_digest,
            max_seq if max_seq is not None else 1 << 62,
        )
        if until is not None:
            sql += " AND high_time <= ?"
            params += (until.timestamp() * 1000,)
        rows = await self._run(
            f"reading snapshots of {thread_id!r}", sql + " ORDER BY seq DESC LIMIT 1", params
        )
        if not rows:
            return None
        seq, high, fmt, digest, body = rows[0]
        return Snapshot(
            thread_id=thread_id,
            seq=int(seq),
            high_time=_time(high),
            rules_digest=rules_digest,
            format=int(fmt),
            checksum=str(digest),
            body=bytes(body),
        )

    async def seqs(self, thread_id: str, rules_digest: str) -> list[int]:
        rows = await self._run(
            f"listing snapshots of {thread_id!r}",
            "SELECT seq FROM snapshots WHERE thread_id = ? AND rules = ? ORDER BY seq",
            (thread_id, rules_digest),
        )
        return [int(r[0]) for r in rows]

    async def checkpoint(self, name: str) -> int:
        rows = await self._run(
            f"reading checkpoint {name!r}",
            "SELECT position FROM checkpoints WHERE name = ?",
            (name,),
        )
        return int(rows[0][0]) if rows else 0

    async def save_checkpoint(self, name: str, position: int) -> None:
        await self._run(
            f"saving checkpoint {name!r}",
            "INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
            " SET position = excluded.position WHERE excluded.position > position",
            (name, position),
        )

    async def clear(self, thread_id: str | None = None) -> int:
        if thread_id is not None:
            rows = await self._run(
                f"deleting snapshots of {thread_id!r}",
                "DELETE FROM snapshots WHERE thread_id = ? RETURNING 1",
                (thread_id,),
            )
            return len(rows)

        def work(con: sqlite3.Connection) -> int:
            # DELETE without WHERE or RETURNING: SQLite drops the tables' pages in one go.
            (count,) = con.execute("SELECT count(*) FROM snapshots").fetchone()
            for table in ("snapshots", "chunks", "checkpoints"):
                con.execute(f"DELETE FROM {table}")
            return int(count)

        return await self._in_transaction("deleting all snapshots, chunks and checkpoints", work)
