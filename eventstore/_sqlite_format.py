"""The embedded log's file format: its tables, the statements that write and read them,
and the upgrades from older formats (constants and one function; no I/O).

Tables (format 2)::

    threads(tid INTEGER PRIMARY KEY, thread_id TEXT UNIQUE, tenant TEXT)
    events(position INTEGER PRIMARY KEY, tid, seq, event_key, occurred_at, body BLOB)
      INDEX (event_key)             -- idempotency: first 8 bytes of a UUID event_id, else a hash
    thread_index(tid, seq, position, PRIMARY KEY (tid, seq)) WITHOUT ROWID
    thread_index_recent(tid, seq, position, PRIMARY KEY (tid, seq)) WITHOUT ROWID

Threads get small integer ids so the per-thread index stays compact when thousands of
threads interleave. A thread's events are found through the thread index, in two parts:
each commit adds its events' ``(tid, seq, position)`` to the small ``thread_index_recent``,
and once that holds :data:`SETTLE_ROWS` rows, a commit moves them all into
``thread_index``. An index over every event took one leaf page per thread written in
every commit (60 of a 64-append group's 80 WAL pages); the small one takes a few, and the
move writes each leaf of the big one once per few thousand events. Every event is in
exactly one of the two, the recent ones having the higher seqs of their thread; both
primary keys refuse a second event at a ``(tid, seq)``: the last line of defence for
``seq``. A thread's version is its highest seq in either.

Format 1 (agentlog 0.1) had no thread index tables: a ``UNIQUE INDEX (tid, seq)`` on
``events`` itself; :data:`UPGRADES` turns it into format 2 when the file is opened.
"""

from __future__ import annotations

import hashlib

from eventstore._sqlite_file import LOG_APPLICATION_ID

APPLICATION_ID = LOG_APPLICATION_ID  # "AGLG": marks a SQLite file as an agentlog log
SCHEMA_VERSION = 2

SETTLE_ROWS = 4096
"""Rows of ``thread_index_recent`` at which a commit moves them into ``thread_index``."""

_THREAD_INDEX = (
    "CREATE TABLE thread_index (tid INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " position INTEGER NOT NULL, PRIMARY KEY (tid, seq)) WITHOUT ROWID",
    "CREATE TABLE thread_index_recent (tid INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " position INTEGER NOT NULL, PRIMARY KEY (tid, seq)) WITHOUT ROWID",
)
DDL = (
    "CREATE TABLE threads (tid INTEGER PRIMARY KEY, thread_id TEXT NOT NULL UNIQUE,"
    " tenant TEXT NOT NULL)",
    "CREATE TABLE events (position INTEGER PRIMARY KEY, tid INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, event_key INTEGER NOT NULL, occurred_at INTEGER NOT NULL,"
    " body BLOB NOT NULL)",
    "CREATE INDEX events_event_key ON events (event_key)",
    *_THREAD_INDEX,
)
UPGRADES = {
    # format 1 indexed every event by (tid, seq) on the events table itself
    1: (
        *_THREAD_INDEX,
        "INSERT INTO thread_index SELECT tid, seq, position FROM events ORDER BY tid, seq",
        "DROP INDEX events_thread_seq",
    ),
}
SETTLE = (
    "INSERT INTO thread_index SELECT tid, seq, position FROM thread_index_recent",
    "DELETE FROM thread_index_recent",
)
INSERT_EVENTS = (
    "INSERT INTO events (position, tid, seq, event_key, occurred_at, body)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_RECENT = "INSERT INTO thread_index_recent (position, tid, seq) VALUES (?, ?, ?)"
# A thread's events from one part of the thread index, in seq order (the settled part
# holds the lower seqs); both are read in one read transaction.
_THREAD_ROWS = (
    "SELECT e.position, e.occurred_at, e.body FROM {} i JOIN events e ON e.position = i.position"
    " WHERE i.tid = ? AND i.seq >= ? AND i.seq <= ? ORDER BY i.seq"
)
SETTLED_ROWS = _THREAD_ROWS.format("thread_index")
RECENT_ROWS = _THREAD_ROWS.format("thread_index_recent")
VERSION_OF_TID = (
    "SELECT coalesce((SELECT max(seq) FROM thread_index_recent WHERE tid = ?1),"
    " (SELECT max(seq) FROM thread_index WHERE tid = ?1), 0)"
)
VERSION_OF_T = VERSION_OF_TID.replace("?1", "t.tid")  # of the row t of threads
VERSION_OF_THREAD = f"SELECT ({VERSION_OF_T}) FROM threads t WHERE t.thread_id = ?"


def event_key(event_id: str) -> int:
    """Signed 64-bit index key of an event id.

    A UUID's first 8 bytes are used as they are (for UUIDv7 that is its timestamp, so the
    index grows at its end); any other id is hashed.
    """
    if len(event_id) == 36 and event_id[8] == "-" and event_id[13] == "-":
        try:
            key = int(event_id[:8] + event_id[9:13] + event_id[14:18], 16)
        except ValueError:
            pass
        else:
            return key - (1 << 64) if key >= 1 << 63 else key
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
