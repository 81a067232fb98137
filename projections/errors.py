"""Errors raised by the projection layer.

Catch :class:`ProjectionError` for anything this package raises. Each subclass names one
situation a caller can act on, carries its values as attributes, and says with
``retriable`` whether the same call can succeed later::

    ProjectionError
    ├── ThreadNotFound          the thread has no events (nothing to project, roll back, fork)
    ├── PointNotFound           a time-travel point (seq, time, event id) is not in the thread
    ├── GapInThread             events were handed to a fold out of seq order (a bug upstream)
    ├── ThreadDiverged          an event with another id sits at a seq already applied
    ├── NoConflict              a resolve names a key that has no unresolved conflict
    ├── SiblingNotFound         a resolve chose an event id that is not one of the siblings
    ├── NothingToRollBack       no earlier consistent point exists (``--to last-consistent``)
    ├── ThreadExists            a fork's target thread already has events
    ├── SnapshotStoreError      the snapshot store failed (translated driver error)
    │   └── SnapshotStoreUnavailable   it cannot be reached right now (retriable)
    ├── ProjectionClosed        a store or projector is not open
    └── SyncTimeout             an ``immediate`` write is stored but was not applied in time
"""

from __future__ import annotations


class ProjectionError(Exception):
    """Base class of every error raised by :mod:`projections`."""

    retriable: bool = False


class ThreadNotFound(ProjectionError):
    """The thread has no events."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(f"thread {thread_id!r} has no events")


class PointNotFound(ProjectionError):
    """A point in a thread's history (seq, time or event id) does not exist."""

    def __init__(self, thread_id: str, point: str, detail: str) -> None:
        self.thread_id = thread_id
        self.point = point
        self.detail = detail
        super().__init__(f"thread {thread_id!r}: no point {point}: {detail}")


class GapInThread(ProjectionError):
    """An event's seq does not follow the state's version."""

    def __init__(self, thread_id: str, expected_seq: int, found_seq: int) -> None:
        self.thread_id = thread_id
        self.expected_seq = expected_seq
        self.found_seq = found_seq
        super().__init__(
            f"thread {thread_id!r}: expected the event at seq {expected_seq}, found seq {found_seq}"
        )


class ThreadDiverged(ProjectionError):
    """Two different events claim the same seq of a thread."""

    def __init__(self, thread_id: str, seq: int, applied_id: str, found_id: str) -> None:
        self.thread_id = thread_id
        self.seq = seq
        self.applied_id = applied_id
        self.found_id = found_id
        super().__init__(
            f"thread {thread_id!r}: seq {seq} was applied as event {applied_id!r}, "
            f"but the log now has {found_id!r} there"
        )


class NoConflict(ProjectionError):
    """A resolve names a memory key that is not in conflict."""

    def __init__(self, thread_id: str, key: str) -> None:
        self.thread_id = thread_id
        self.key = key
        super().__init__(f"thread {thread_id!r}: memory key {key!r} has no unresolved conflict")


class SiblingNotFound(ProjectionError):
    """A resolve chose an event id that is not one of the key's siblings."""

    def __init__(self, thread_id: str, key: str, event_id: str, siblings: tuple[str, ...]) -> None:
        self.thread_id = thread_id
        self.key = key
        self.event_id = event_id
        self.siblings = siblings
        super().__init__(
            f"thread {thread_id!r}: {event_id!r} is not a sibling of memory key {key!r}; "
            f"siblings are {', '.join(siblings)}"
        )


class NothingToRollBack(ProjectionError):
    """No earlier point qualifies as a rollback target."""

    def __init__(self, thread_id: str, detail: str) -> None:
        self.thread_id = thread_id
        self.detail = detail
        super().__init__(f"thread {thread_id!r}: nothing to roll back to: {detail}")


class ThreadExists(ProjectionError):
    """A fork's target thread already has events."""

    def __init__(self, thread_id: str, version: int) -> None:
        self.thread_id = thread_id
        self.version = version
        super().__init__(f"cannot fork into thread {thread_id!r}: it already has {version} events")


class SnapshotStoreError(ProjectionError):
    """The snapshot store failed; ``where`` names the store."""

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(f"snapshot store {where}: {detail}")


class SnapshotStoreUnavailable(SnapshotStoreError):
    """The snapshot store cannot be reached right now."""

    retriable = True


class ProjectionClosed(ProjectionError):
    """A snapshot store or projector is not open (never opened, or closed)."""

    def __init__(self, what: str, state: str) -> None:
        self.what = what
        self.state = state
        super().__init__(f"{what} is {state}; use it inside 'async with' while it is open")


class SyncTimeout(ProjectionError):
    """An ``immediate`` write was appended but the projection did not apply it in time."""

    retriable = True

    def __init__(self, thread_id: str, position: int, timeout: float) -> None:
        self.thread_id = thread_id
        self.position = position
        self.timeout = timeout
        super().__init__(
            f"thread {thread_id!r}: the write at log position {position} is stored, but the "
            f"projection did not apply it within {timeout:g} s"
        )
