"""Claiming a SQLite file for one of agentlog's stores: check what it is, set it up once.

The embedded log, the Kafka thread index and the projections' snapshot store mark their
files with SQLite's ``application_id`` and a format number in ``user_version``, refuse a
file that belongs to something else with :class:`CorruptLog`, and create their tables
exactly once even when several processes open a new file at the same moment.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence

from eventstore.errors import CorruptLog, StorageError

log = logging.getLogger(__name__)

LOG_APPLICATION_ID = 0x41474C47  # "AGLG"
INDEX_APPLICATION_ID = 0x41474C49  # "AGLI"
SNAPSHOT_APPLICATION_ID = 0x4147534E  # "AGSN": projections.SqliteSnapshotStore
KNOWN_FILES = {
    LOG_APPLICATION_ID: "an embedded agentlog log",
    INDEX_APPLICATION_ID: "an agentlog thread index",
    SNAPSHOT_APPLICATION_ID: "an agentlog snapshot store",
}
"""application_id -> what agentlog keeps in such a file."""


def sqlite_locked(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file is locked by another connection (retriable)."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def claim(
    con: sqlite3.Connection,
    location: str,
    *,
    application_id: int,
    format_version: int,
    ddl: Sequence[str],
    rebuild_hint: str = "",
    known: Mapping[int, str] = KNOWN_FILES,
    page_size: int | None = None,
    upgrades: Mapping[int, Sequence[str]] | None = None,
) -> None:
    """Check that ``con``'s file is ours (or empty), switch it to WAL, create the tables.

    Args:
        con: An autocommit connection to the file.
        location: The file, for messages.
        application_id: The id our kind of file carries.
        format_version: The table layout this code reads.
        ddl: Statements that create the tables in an empty file.
        rebuild_hint: Appended to the wrong-format message (e.g. how to rebuild the file).
        known: Other agentlog file kinds, to name them when one is opened by mistake.
        page_size: SQLite page size (bytes, a power of two from 512 to 65536) for a file
            this call creates; SQLite's default (4096) if None. A file that exists keeps
            its own.
        upgrades: Per older format, the statements that turn a file of that format into
            ``format_version``; they run once, in one transaction, when such a file is
            opened. A format not listed is refused.

    Raises:
        CorruptLog: the file is another kind of agentlog file, another application's
            database, or has another format.
        StorageError: the file cannot be switched to WAL.
        sqlite3.Error: left to the caller to translate.
    """
    what = known.get(application_id, "an agentlog file")
    app_id = con.execute("PRAGMA application_id").fetchone()[0]
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if app_id == application_id:
        if version != format_version and version not in (upgrades or {}):
            raise CorruptLog(
                location,
                f"{what.split(' ', 1)[1]} format {version}, this agentlog reads format "
                f"{format_version}{rebuild_hint}",
            )
        con.execute("PRAGMA journal_mode = WAL")
        if version != format_version:
            assert upgrades is not None
            _upgrade(con, location, what, version, format_version, upgrades[version])
        return
    if app_id in known:
        raise CorruptLog(location, f"is {known[app_id]}, not {what}")
    tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != 0 or tables:
        raise CorruptLog(
            location,
            "is a SQLite database of another application "
            f"(application_id {app_id:#x}, {tables} schema objects), not {what}",
        )
    if page_size is not None:  # takes effect only before the file's first write
        con.execute(f"PRAGMA page_size = {int(page_size)}")
    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode not in ("wal", "memory"):  # "memory": an in-memory database, for tests
        raise StorageError(f"{location}: cannot switch to WAL mode (got {mode!r})")
    con.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have set the file up while we waited for the lock.
        if con.execute("PRAGMA application_id").fetchone()[0] != application_id:
            for statement in ddl:
                con.execute(statement)
            con.execute(f"PRAGMA application_id = {application_id}")
            con.execute(f"PRAGMA user_version = {format_version}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _upgrade(
    con: sqlite3.Connection,
    location: str,
    what: str,
    version: int,
    format_version: int,
    statements: Sequence[str],
) -> None:
    """Run ``statements`` to turn a file of format ``version`` into ``format_version``,
    in one transaction (another process may have done it while we waited for the lock)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        if con.execute("PRAGMA user_version").fetchone()[0] == version:
            log.info(
                "%s: upgrading %s from format %d to %d", location, what, version, format_version
            )
            for statement in statements:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {format_version}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
