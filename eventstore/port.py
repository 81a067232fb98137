"""The ``EventLog`` port: what every log backend (embedded SQLite, Kafka) provides.

Backends are used as async context managers; a log is unopened, open, or closed, and a
closed log cannot be reopened. The contract suite in ``tests/contracts`` runs against every
backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from eventstore.envelope import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    ThreadInfo,
)


@runtime_checkable
class EventLog(Protocol):
    """An append-only log of events, ordered per thread by ``seq``."""

    async def __aenter__(self) -> Self:
        """Open the log (connect, create what is missing). A log opens once.

        Raises:
            LogClosed: the log was opened before.
            StorageError: the storage cannot be opened (``CorruptLog`` names the problem).
        """
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the log: see :meth:`aclose`."""
        ...

    async def aclose(self) -> None:
        """Finish what was accepted (nothing acknowledged is lost), then release resources.

        Idempotent and safe to call while being cancelled.
        """
        ...

    async def append(
        self,
        thread_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = None,
    ) -> AppendResult:
        """Append ``events`` to ``thread_id`` atomically, numbering them from version + 1.

        Args:
            thread_id: The thread to append to (created by its first append).
            events: One or more events, appended in the order given.
            expected_version: Append only if the thread's version (``seq`` of its last
                event, 0 for a new thread) equals this; ``None`` appends whatever it is.

        Returns:
            Positions and seqs of the events. If every event_id was stored before (a
            retried append), nothing is written and the original positions come back with
            ``deduplicated=True``; the version check is skipped for such a retry.

        Raises:
            WrongExpectedVersion: the thread's version differs; carries the current one.
            IdempotencyConflict: some event_ids were stored before, but not as this append.
            InvalidEvent: an event does not fit the schema (names the field).
            EventTooLarge: an encoded event exceeds the backend's limit.
            StorageError: the storage failed; nothing of this append was written.
            LogClosed: the log is not open.

        Concurrency and cancellation: appends may run concurrently from many tasks; for
        one thread, exactly one of several appends with the same expected version wins.
        When this returns, the events are durable as the backend is configured. If the
        call is cancelled, the append may or may not have happened: retry with the same
        event_ids to find out, which is safe.
        """
        ...

    async def read_thread(
        self,
        thread_id: str,
        from_seq: int = 1,
        to_seq: int | None = None,
        *,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Return the thread's events with ``from_seq <= seq <= to_seq``, in ``seq`` order.

        Args:
            thread_id: The thread; an unknown thread has no events (empty list).
            from_seq: First seq to return.
            to_seq: Last seq to return; ``None`` for the thread's end.
            until: Stop before the first event that occurred after this time, so the
                result is always a prefix of the thread (the state "as of" ``until``).

        Raises:
            StorageError: the storage failed.
            CodecError: a stored event cannot be decoded.
            LogClosed: the log is not open.

        Concurrency: reads see every append that returned before the read started.
        """
        ...

    async def read_all(self, from_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Return up to ``limit`` events of all threads with ``position >= from_position``.

        Resume after the last event seen with ``from_position=last.position + 1``.

        Raises:
            StorageError: the storage failed.
            CodecError: a stored event cannot be decoded.
            LogClosed: the log is not open.
        """
        ...

    def subscribe(self, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        """Yield every event with ``position >= from_position``, then tail new ones forever.

        Events come in position order, each once per subscription. Cancel the iterating
        task (or break out and close the iterator) to stop; nothing is left running.
        Events appended by other processes are seen too (embedded: within the poll
        interval).

        Raises:
            StorageError: the storage failed.
            LogClosed: the log was closed while tailing.
        """
        ...

    async def read_event(self, event_id: str) -> RecordedEvent | None:
        """Return the stored event with this id, or ``None`` if the log has none.

        Raises:
            StorageError: the storage failed.
            CodecError: the stored event cannot be decoded.
            LogClosed: the log is not open.
        """
        ...

    async def version(self, thread_id: str) -> int:
        """Return the thread's version: ``seq`` of its last event, 0 if it has none."""
        ...

    async def threads(self, *, after: str = "", limit: int = 1000) -> list[ThreadInfo]:
        """List threads in id order, ``limit`` at a time, starting after ``after``.

        Raises:
            StorageError: the storage failed.
            LogClosed: the log is not open.
        """
        ...

    async def head(self) -> int:
        """Return the position of the last event in the log (0 when the log is empty)."""
        ...
