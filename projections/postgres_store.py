"""``PostgresSnapshotStore``: snapshots and checkpoints in PostgreSQL (psycopg 3, pooled).

The store for deployments beyond one machine: many projector and reader processes share
one database. Tables live in their own schema (``agentlog`` unless told otherwise)::

    snapshots(thread_id, rules, seq, high_time, format, checksum, body)
        primary key (thread_id, rules, seq)
    checkpoints(name, position)
        primary key name

Pooling: each store owns one :class:`psycopg_pool.AsyncConnectionPool`. Opening the store
connects once to check that PostgreSQL is reachable (a clear
:class:`~projections.errors.SnapshotStoreUnavailable` if not, without waiting for the
pool), creates the schema and tables if they are missing, then opens the pool and waits
until it holds ``min_size`` connections (5 by default). Under load it grows up to
``max_size`` (20); connections beyond ``min_size`` unused for ``max_idle`` seconds (30)
are closed again. Every call borrows one connection for one transaction, waiting at most
``timeout`` seconds (10) for a free one; a call that cannot get one fails with
``SnapshotStoreUnavailable`` (retriable) rather than queueing forever.

Concurrency: any number of tasks (and processes) may call one store at once; each call
is a single transaction. ``save`` is an upsert, so racing saves of one key are safe (they
hold equal states; the last wins). ``save_checkpoint`` is a conditional upsert that
PostgreSQL applies under the row's lock, so racing writers never move a checkpoint back.
Schema creation takes a transaction-scoped advisory lock, so processes starting together
on a fresh database do not trip over each other's ``CREATE``; where the tables already
exist no DDL runs at all (a role without ``CREATE`` rights can use an existing schema).

Cancellation: a cancelled call rolls its transaction back (the pool resets or discards
the connection), so a save is either committed whole or not at all. ``aclose`` is
shielded and idempotent.

Errors: every psycopg error is translated here. Connection and server-availability
problems (``psycopg.OperationalError``, pool timeouts) become
``SnapshotStoreUnavailable``; anything else becomes
:class:`~projections.errors.SnapshotStoreError`. Messages name the server as
``user@host:port/db`` and never include the password.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import anyio
import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed

from projections.errors import ProjectionClosed, SnapshotStoreError, SnapshotStoreUnavailable
from projections.serial import Snapshot, saving

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "agentlog"
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names
_APPLICATION_NAME = "agentlog-snapshots"
_MAX_BIGINT = (1 << 63) - 1

_Connection = psycopg.AsyncConnection[TupleRow]

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    "CREATE TABLE IF NOT EXISTS {schema}.snapshots ("
    " thread_id text NOT NULL, rules text NOT NULL, seq bigint NOT NULL,"
    " high_time timestamptz NULL, format integer NOT NULL, checksum text NOT NULL,"
    " body bytea NOT NULL, PRIMARY KEY (thread_id, rules, seq))",
    "CREATE TABLE IF NOT EXISTS {schema}.checkpoints ("
    " name text PRIMARY KEY, position bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.chunks (digest text PRIMARY KEY, body bytea NOT NULL)",
)


def _utc(moment: datetime | None) -> datetime | None:
    # Naive datetimes count as local time, as ``datetime.timestamp`` (and so the SQLite
    # store) reads them; answers are always aware and in UTC.
    return None if moment is None else moment.astimezone(UTC)


def _lock_key(schema: str) -> int:
    """The advisory lock that serialises creating ``schema`` (a signed 64-bit int)."""
    digest = hashlib.blake2b(f"agentlog.snapshots:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresSnapshotStore:
    """Snapshots in PostgreSQL, through a pool of async psycopg connections.

    Args:
        dsn: libpq connection string or URI (``postgresql://user@host:5432/db``).
        schema: Schema holding the tables; created if missing.
        min_size: Connections the pool keeps open (and opens before the store is ready).
        max_size: Most connections the pool opens under load.
        max_idle: Seconds a connection beyond ``min_size`` may sit unused before it is
            closed.
        timeout: Seconds to wait for PostgreSQL when opening the store, and for a free
            pooled connection on each call.

    Raises:
        ValueError: an argument is out of range or the DSN does not parse (the message
            names the argument).

    Attributes:
        schema: The schema holding the tables.
        min_size: See Args.
        max_size: See Args.
        max_idle: See Args.
        timeout: See Args.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        min_size: int = 5,
        max_size: int = 20,
        max_idle: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        params = _parse_dsn(dsn)
        _check_schema(schema)
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"min_size must be an int of 0 or more, got {min_size!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be an int of 1 or more, got {max_size!r}")
        if max_size < min_size:
            raise ValueError(f"max_size ({max_size}) must be at least min_size ({min_size})")
        for name, value in (("max_idle", max_idle), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number of seconds, got {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"{name} must be a positive, finite number of seconds, got {value}"
                )
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.max_idle = float(max_idle)
        self.timeout = float(timeout)
        self._dsn = dsn
        self._password = params.get("password") or None
        self._server = _describe(params)
        self._where = f"postgresql://{self._server} (schema {schema!r})"
        # Only what the DSN leaves unset: a bound on each connection attempt (libpq's
        # minimum is 2 s) and a name that shows up in pg_stat_activity.
        self._kwargs: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._kwargs["connect_timeout"] = max(2, math.ceil(self.timeout))
        if "application_name" not in params:
            self._kwargs["application_name"] = _APPLICATION_NAME
        self._pool: AsyncConnectionPool[_Connection] | None = None
        self._state = "unopened"
        ident = sql.Identifier(schema)
        self._q_save = sql.SQL(
            "INSERT INTO {}.snapshots AS s"
            " (thread_id, rules, seq, high_time, format, checksum, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (thread_id, rules, seq) DO UPDATE SET"
            " high_time = excluded.high_time, format = excluded.format,"
            " checksum = excluded.checksum, body = excluded.body"
        ).format(ident)
        latest = (
            "SELECT seq, high_time, format, checksum, body FROM {}.snapshots"
            " WHERE thread_id = %s AND rules = %s AND seq <= %s"
        )
        order = " ORDER BY seq DESC LIMIT 1"
        self._q_latest = sql.SQL(latest + order).format(ident)
        self._q_latest_until = sql.SQL(latest + " AND high_time <= %s" + order).format(ident)
        self._q_seqs = sql.SQL(
            "SELECT seq FROM {}.snapshots WHERE thread_id = %s AND rules = %s ORDER BY seq"
        ).format(ident)
        self._q_checkpoint = sql.SQL("SELECT position FROM {}.checkpoints WHERE name = %s").format(
            ident
        )
        self._q_save_checkpoint = sql.SQL(
            "INSERT INTO {}.checkpoints AS c (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
            " WHERE excluded.position > c.position"
        ).format(ident)
        self._q_clear_thread = sql.SQL("DELETE FROM {}.snapshots WHERE thread_id = %s").format(
            ident
        )
        self._q_clear_all = sql.SQL("DELETE FROM {}.snapshots").format(ident)
        self._q_clear_chunks = sql.SQL("DELETE FROM {}.chunks").format(ident)
        self._q_save_chunk = sql.SQL(
            "INSERT INTO {}.chunks (digest, body) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        ).format(ident)
        self._q_chunks = sql.SQL(
            "SELECT digest, body FROM {}.chunks WHERE digest = ANY(%s)"
        ).format(ident)
        self._q_clear_checkpoints = sql.SQL("DELETE FROM {}.checkpoints").format(ident)

    def __repr__(self) -> str:
        return f"PostgresSnapshotStore({self._where}, {self._state})"

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise ProjectionClosed(repr(self), f"{self._state} and cannot be reopened")
        self._state = "opening"
        try:
            await self._prepare()
            pool = await self._open_pool()
        except BaseException:
            self._state = "closed"
            raise
        if self._state != "opening":  # aclose() ran meanwhile: it wins
            with anyio.CancelScope(shield=True):
                await pool.close()
            raise ProjectionClosed(repr(self), "closed while it was opening")
        self._pool = pool
        self._state = "open"
        log.info("opened snapshot store %s", self._where)
        return self

    async def _prepare(self) -> None:
        """Connect once (fail fast and clearly if PostgreSQL is unreachable), create the
        schema and tables if missing."""
        try:
            with anyio.fail_after(self.timeout):
                conn = await psycopg.AsyncConnection.connect(self._dsn, **self._kwargs)
        except TimeoutError as exc:
            raise self._unreachable(f"no connection within {self.timeout:g} s") from exc
        except psycopg.Error as exc:
            raise self._unreachable(self._reason(exc)) from exc
        try:
            async with conn:
                await self._create_tables(conn)
        except psycopg.OperationalError as exc:
            raise SnapshotStoreUnavailable(
                self._where, f"creating the tables: {self._reason(exc)}"
            ) from exc
        except psycopg.Error as exc:
            raise SnapshotStoreError(
                self._where, f"creating the tables: {self._reason(exc)}"
            ) from exc

    async def _create_tables(self, conn: _Connection) -> None:
        ident = sql.Identifier(self.schema)
        tables = sql.SQL("SELECT to_regclass(%s), to_regclass(%s), to_regclass(%s)")
        names = tuple(
            f"{ident.as_string(conn)}.{table}" for table in ("snapshots", "checkpoints", "chunks")
        )
        row = await (await conn.execute(tables, names)).fetchone()
        if row is not None and None not in row:
            return
        # Two processes creating the same schema at once would otherwise race to insert
        # the same catalog rows; the lock ends with the transaction.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema),))
        for statement in _DDL:
            await conn.execute(sql.SQL(statement).format(schema=ident))
        log.info("created the snapshot tables in %s", self._where)

    async def _open_pool(self) -> AsyncConnectionPool[_Connection]:
        pool: AsyncConnectionPool[_Connection] = AsyncConnectionPool(
            self._dsn,
            kwargs=self._kwargs,
            min_size=self.min_size,
            max_size=self.max_size,
            max_idle=self.max_idle,
            timeout=self.timeout,
            name=f"agentlog-snapshots-{self.schema}",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await pool.close()
            if isinstance(exc, psycopg.Error):
                raise self._unreachable(
                    f"the pool did not get {self.min_size} connections within "
                    f"{self.timeout:g} s: {self._reason(exc)}"
                ) from exc
            raise
        return pool

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool (waiting up to ``timeout`` for borrowed connections). Idempotent;
        shielded from cancellation."""
        pool, self._pool = self._pool, None
        self._state = "closed"
        if pool is None:
            return
        with anyio.move_on_after(self.timeout, shield=True):
            try:
                await pool.close(timeout=self.timeout)
            except psycopg.Error as exc:  # closing is best effort: the server drops them
                log.warning("closing snapshot store %s: %s", self._where, self._reason(exc))
        log.info("closed snapshot store %s", self._where)

    @property
    def pool(self) -> AsyncConnectionPool[_Connection]:
        """The connection pool, for monitoring (``pool.get_stats()``); the store owns it,
        so do not close it or borrow connections from it.

        Raises:
            ProjectionClosed: the store is not open.
        """
        if self._pool is None:
            raise ProjectionClosed(repr(self), self._state)
        return self._pool

    # --- calls -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self, doing: str) -> AsyncIterator[_Connection]:
        """A pooled connection for one transaction (committed when the block ends without
        an error), with psycopg's errors translated."""
        pool = self._pool
        if pool is None:
            raise ProjectionClosed(repr(self), self._state)
        try:
            async with pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolClosed as exc:
            raise ProjectionClosed(repr(self), self._state) from exc
        except psycopg.OperationalError as exc:
            raise SnapshotStoreUnavailable(self._where, f"{doing}: {self._reason(exc)}") from exc
        except psycopg.Error as exc:
            raise SnapshotStoreError(self._where, f"{doing}: {self._reason(exc)}") from exc

    async def save(self, snapshot: Snapshot) -> None:
        await self.save_many([snapshot])

    async def save_many(self, snapshots: Sequence[Snapshot]) -> None:
        if not snapshots:
            return
        doing = saving(snapshots)
        # One order of chunk keys for every writer: concurrent batches cannot deadlock.
        chunks = sorted({d: b for s in snapshots for d, b in s.chunks.items()}.items())
        rows = [
            (
                s.thread_id,
                s.rules_digest,
                s.seq,
                _utc(s.high_time),
                s.format,
                s.checksum,
                s.body,
            )
            for s in snapshots
        ]
        async with self._connection(doing) as conn, conn.cursor() as cur:
            if chunks:
                await cur.executemany(self._q_save_chunk, chunks)
            await cur.executemany(self._q_save, rows)

    async def load_chunks(self, digests: Sequence[str]) -> dict[str, bytes]:
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        async with self._connection(f"reading {len(wanted)} snapshot chunks") as conn:
            cur = await conn.execute(self._q_chunks, (wanted,))
            rows = await cur.fetchall()
        return {str(d): bytes(b) for d, b in rows}

    async def latest(
        self,
        thread_id: str,
        rules_digest: str,
        *,
        max_seq: int | None = None,
        until: datetime | None = None,
    ) -> Snapshot | None:
        params: tuple[Any, ...] = (
            thread_id,
            rules_digest,
            _MAX_BIGINT if max_seq is None else min(max_seq, _MAX_BIGINT),
        )
        query = self._q_latest
        if until is not None:  # rows without a high_time never match a time bound
            query = self._q_latest_until
            params += (_utc(until),)
        async with self._connection(f"reading snapshots of {thread_id!r}") as conn:
            row = await (await conn.execute(query, params)).fetchone()
        if row is None:
            return None
        seq, high, fmt, digest, body = row
        return Snapshot(
            thread_id=thread_id,
            seq=int(seq),
            high_time=_utc(high),
            rules_digest=rules_digest,
            format=int(fmt),
            checksum=str(digest),
            body=bytes(body),
        )

    async def seqs(self, thread_id: str, rules_digest: str) -> list[int]:
        async with self._connection(f"listing snapshots of {thread_id!r}") as conn:
            cur = await conn.execute(self._q_seqs, (thread_id, rules_digest))
            rows = await cur.fetchall()
        return [int(r[0]) for r in rows]

    async def checkpoint(self, name: str) -> int:
        async with self._connection(f"reading checkpoint {name!r}") as conn:
            row = await (await conn.execute(self._q_checkpoint, (name,))).fetchone()
        return 0 if row is None else int(row[0])

    async def save_checkpoint(self, name: str, position: int) -> None:
        async with self._connection(f"saving checkpoint {name!r}") as conn:
            await conn.execute(self._q_save_checkpoint, (name, position))

    async def clear(self, thread_id: str | None = None) -> int:
        if thread_id is not None:
            async with self._connection(f"deleting snapshots of {thread_id!r}") as conn:
                cur = await conn.execute(self._q_clear_thread, (thread_id,))
                return max(cur.rowcount, 0)
        async with self._connection("deleting all snapshots and checkpoints") as conn:
            cur = await conn.execute(self._q_clear_all)
            deleted = max(cur.rowcount, 0)
            await conn.execute(self._q_clear_chunks)
            await conn.execute(self._q_clear_checkpoints)
        return deleted

    # --- messages ----------------------------------------------------------------------

    def _reason(self, exc: BaseException) -> str:
        """The driver's message on one line, with the password (if any) blanked out."""
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if self._password:
            text = text.replace(self._password, "***")
        return text or type(exc).__name__

    def _unreachable(self, reason: str) -> SnapshotStoreUnavailable:
        return SnapshotStoreUnavailable(self._where, f"PostgreSQL is unreachable: {reason}")


def _parse_dsn(dsn: str) -> dict[str, str]:
    if not isinstance(dsn, str) or not dsn.strip():
        raise ValueError("dsn must be a non-empty PostgreSQL connection string")
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq's message may quote the string, password included: leave it out.
        raise ValueError(
            "dsn is not a valid PostgreSQL connection string "
            "(expected postgresql://USER@HOST:PORT/DB or 'host=... dbname=...')"
        ) from None
    return {k: str(v) for k, v in params.items() if v is not None}


def _check_schema(schema: str) -> None:
    if not isinstance(schema, str) or not schema:
        raise ValueError(f"schema must be a non-empty string, got {schema!r}")
    if "\x00" in schema:
        raise ValueError(f"schema must not contain NUL characters, got {schema!r}")
    if len(schema.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"schema must be at most {_MAX_IDENTIFIER_BYTES} bytes (PostgreSQL truncates "
            f"longer names), got {len(schema.encode())}: {schema!r}"
        )


def _describe(params: dict[str, str]) -> str:
    """``user@host:port/db`` from parsed DSN parameters (never the password)."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user")
    db = params.get("dbname") or user or "postgres"
    return f"{user + '@' if user else ''}{host}:{port}/{db}"
