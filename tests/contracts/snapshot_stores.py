"""The snapshot stores every ``SnapshotStore`` contract test runs against.

``snapshot_store`` yields a fresh, open store of each kind: SQLite in a new file,
PostgreSQL (``AGENTLOG_TEST_PG_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``)
in a schema of its own (``t_<uuid>``), dropped afterwards. ``pg_schema`` gives PostgreSQL
only tests such a schema for stores they build themselves. An unreachable PostgreSQL
fails the test with how to start it; it is never skipped.

:func:`tamper` rewrites a stored snapshot behind the store's back (plain SQL on the file
or the schema), for the tests that check damaged snapshots are survived.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql

from projections import PostgresSnapshotStore, SnapshotStore, SqliteSnapshotStore

PG_DSN_ENV = "AGENTLOG_TEST_PG_DSN"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect 15 main start"
STORE_KINDS = ("sqlite", "postgres")


def pg_dsn() -> str:
    """The PostgreSQL the tests use."""
    return os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN


def _shown(dsn: str) -> str:
    """``dsn`` without its password, for messages."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(an unparsable DSN)"
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **params)


def _fail_unreachable(dsn: str, exc: Exception) -> NoReturn:
    pytest.fail(
        f"PostgreSQL is not reachable at {_shown(dsn)!r} ({exc}). Start it with "
        f"`{START_POSTGRES}`, or point {PG_DSN_ENV} at a running server.",
        pytrace=False,
    )


async def _admin(dsn: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection, or the test fails saying how to start PostgreSQL."""
    try:
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _fail_unreachable(dsn, exc)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name on the test PostgreSQL, dropped (with its tables) afterwards.

    Fails the test, with how to start the server, if PostgreSQL is unreachable. (A plain
    fixture, so that ``snapshot_store`` can request it while the event loop runs.)
    """
    dsn = pg_dsn()
    schema = f"t_{uuid.uuid4().hex}"
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        _fail_unreachable(dsn, exc)
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=STORE_KINDS)
async def snapshot_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SnapshotStore]:
    """A fresh, open snapshot store of each kind (SQLite, PostgreSQL)."""
    store: SnapshotStore
    if request.param == "sqlite":
        store = SqliteSnapshotStore(tmp_path / "snapshots.db")
    else:
        schema = request.getfixturevalue("pg_schema")
        # A small pool: the contract does not need 5 idle connections per test.
        store = PostgresSnapshotStore(pg_dsn(), schema=schema, min_size=1, max_size=8)
    async with store:
        yield store


def unopened_like(store: SnapshotStore, tmp_path: Path) -> SnapshotStore:
    """A new, unopened store of the same kind as ``store`` (same file or schema)."""
    if isinstance(store, SqliteSnapshotStore):
        return SqliteSnapshotStore(store.path)
    if isinstance(store, PostgresSnapshotStore):
        return PostgresSnapshotStore(pg_dsn(), schema=store.schema, min_size=1, max_size=2)
    raise TypeError(f"no twin for {store!r}")


async def tamper(
    store: SnapshotStore,
    thread_id: str,
    seq: int,
    *,
    body: bytes | None = None,
    format: int | None = None,
    checksum: str | None = None,
) -> int:
    """Overwrite columns of the stored snapshots of ``thread_id`` at ``seq`` directly in
    the database (every rules digest). Returns how many rows changed."""
    given = (("body", body), ("format", format), ("checksum", checksum))
    changes = {column: value for column, value in given if value is not None}
    assert changes, "tamper with at least one column"
    if isinstance(store, SqliteSnapshotStore):
        con = sqlite3.connect(store.path, isolation_level=None)
        try:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            updated = con.execute(
                f"UPDATE snapshots SET {assignments} WHERE thread_id = ? AND seq = ?",
                (*changes.values(), thread_id, seq),
            )
            return updated.rowcount
        finally:
            con.close()
    if isinstance(store, PostgresSnapshotStore):
        async with await _admin(pg_dsn()) as conn:
            query = sql.SQL("UPDATE {}.snapshots SET {} WHERE thread_id = %s AND seq = %s").format(
                sql.Identifier(store.schema),
                sql.SQL(", ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(column)) for column in changes
                ),
            )
            cur = await conn.execute(query, (*changes.values(), thread_id, seq))
            return cur.rowcount
    raise TypeError(f"cannot tamper with {store!r}")
