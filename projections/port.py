"""The ``SnapshotStore`` port: where projections keep snapshots and checkpoints.

Snapshots are a cache of thread state (the log is the truth): losing one costs a longer
replay, never correctness. A snapshot is a small head plus content-addressed chunks (see
:mod:`projections.serial`), which snapshots share. Stores keep every snapshot they are
given (time travel starts from the nearest one at or before a point), every chunk, and a
checkpoint per projector name (the log position up to which that projector has processed
events). Adapters:
:class:`~projections.sqlite_store.SqliteSnapshotStore` (embedded default) and
:class:`~projections.postgres_store.PostgresSnapshotStore` (psycopg 3, pooled).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from projections.serial import Snapshot


@runtime_checkable
class SnapshotStore(Protocol):
    """Snapshots of thread state and projector checkpoints."""

    async def __aenter__(self) -> Self:
        """Open the store (connect, create tables). A store opens once.

        Raises:
            SnapshotStoreError: it cannot be opened (the message says where and why).
            ProjectionClosed: it was opened before.
        """
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store: see :meth:`aclose`."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent; safe while being cancelled."""
        ...

    async def save(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` and the chunks it carries, in one transaction; a snapshot of
        the same thread, seq and rules digest is replaced, a chunk already stored is kept
        (chunks are named by their content).

        Concurrency: safe from many tasks and processes; the last save of a key wins (they
        hold equal states, since a state is a function of the log). Durable on return.

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...

    async def save_many(self, snapshots: Sequence[Snapshot]) -> None:
        """Store ``snapshots`` (and their chunks) as :meth:`save` does, all in one
        transaction: a bulk writer's (``rebuild``'s) way to pay one commit per batch.

        Raises:
            SnapshotStoreError: the store failed; none of them was stored.
        """
        ...

    async def latest(
        self,
        thread_id: str,
        rules_digest: str,
        *,
        max_seq: int | None = None,
        until: datetime | None = None,
    ) -> Snapshot | None:
        """The newest snapshot of the thread under these rules with ``seq <= max_seq`` and
        ``high_time <= until`` (each bound only if given); ``None`` if there is none.

        The body is returned as stored, without chunks (see :meth:`load_chunks`);
        decoding and checking it is the caller's job.

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...

    async def load_chunks(self, digests: Sequence[str]) -> dict[str, bytes]:
        """The stored chunks among ``digests`` (digest -> compressed chunk); missing ones
        are left out.

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...

    async def seqs(self, thread_id: str, rules_digest: str) -> list[int]:
        """The seqs of the thread's snapshots under these rules, ascending.

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...

    async def checkpoint(self, name: str) -> int:
        """The log position projector ``name`` has processed up to (0: nothing yet).

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Record that projector ``name`` has processed the log up to ``position``.

        Durable on return; a lower position than the stored one is ignored (checkpoints
        never move back, even when two processes race).

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...

    async def clear(self, thread_id: str | None = None) -> int:
        """Delete the snapshots of one thread (or all, with every chunk and checkpoint).

        Chunks may be shared between threads, so clearing one thread keeps them.

        Returns:
            How many snapshots were deleted.

        Raises:
            SnapshotStoreError: the store failed.
        """
        ...
