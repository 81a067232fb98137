"""What an append does to one thread: the rule every backend's single writer applies.

The embedded log's writer and the Kafka sequencer (``docs/kafka.md``) each know a thread's
current version and where the event ids of an append were stored before, if anywhere.
:func:`decide` turns those values into one outcome:

- :class:`Duplicate`: a retry; every event id was stored before, in this thread, at
  consecutive seqs in the command's order. Nothing is written; the caller gets the
  original positions. The expected version is not checked for a retry.
- :class:`Rejected`: an :class:`~eventstore.errors.IdempotencyConflict` (event ids reused
  inconsistently) or a :class:`~eventstore.errors.WrongExpectedVersion` (stale
  ``expected_version``).
- :class:`Accepted`: the events get seqs ``first_seq..version`` and are to be produced.

Both backends call this one function, so an append means the same thing on SQLite and
Kafka: the same checks in the same order, with the same error texts.

This module is pure: it does no I/O and reads no clock; the same inputs give the same
outcome, so a sequencer that rebuilds its state decides a replayed command the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eventstore.errors import EventStoreError, IdempotencyConflict, WrongExpectedVersion


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """Where an event id already lives: its thread, its seq there and its log position."""

    thread_id: str
    seq: int
    position: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """Append the command's events: they get seqs ``first_seq..version`` in order."""

    first_seq: int
    version: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retry of an append stored before; nothing is written.

    ``positions`` are the original positions in the command's order, ``first_seq`` the seq
    of its first event, and ``version`` the thread's current version (which may have moved
    on since the original append).
    """

    first_seq: int
    positions: tuple[int, ...]
    version: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command is refused with ``error``, exactly as the embedded log would raise it.

    ``error`` is a :class:`~eventstore.errors.WrongExpectedVersion` or an
    :class:`~eventstore.errors.IdempotencyConflict`.
    """

    error: EventStoreError


Decision = Accepted | Duplicate | Rejected


def decide(
    thread_id: str,
    current_version: int,
    expected_version: int | None,
    event_ids: Sequence[str],
    stored: Mapping[str, StoredEvent],
) -> Decision:
    """Decide one append command on one thread, by the embedded log's rules.

    Idempotency comes first: if any event id is in ``stored``, the command is a retry
    (:class:`Duplicate`) or an :class:`~eventstore.errors.IdempotencyConflict`, and the
    expected version is not checked. Then ``expected_version`` (``None``: any) must equal
    ``current_version``. Otherwise the events are :class:`Accepted`.

    Args:
        thread_id: The thread the command appends to.
        current_version: The thread's version: its last seq, 0 for a new thread.
        expected_version: The version the caller expects, or ``None`` for no check.
        event_ids: The ids of the command's events, in order.
        stored: Where each event id seen so far was stored; ids not seen are absent.

    Returns:
        :class:`Accepted`, :class:`Duplicate`, or :class:`Rejected` wrapping the error the
        embedded log raises for the same command.

    Raises:
        ValueError: If ``event_ids`` is empty or repeats an id. Callers validate commands
            before they reach the sequencer (``append`` raises ``InvalidEvent`` for
            both), so this signals a bug, not bad input from a user.
    """
    if not event_ids:
        raise ValueError("an append command needs at least one event")
    if len(event_ids) > 1 and len(set(event_ids)) != len(event_ids):
        raise ValueError("an append command repeats an event id")
    if stored:  # usually empty: the sequencer passes only the ids it has seen
        found = [stored.get(event_id) for event_id in event_ids]
        hits = [s for s in found if s is not None]
        if hits:
            return _retry(thread_id, current_version, event_ids, found, hits)
    if expected_version is not None and expected_version != current_version:
        return Rejected(WrongExpectedVersion(thread_id, expected_version, current_version))
    return Accepted(first_seq=current_version + 1, version=current_version + len(event_ids))


def _retry(
    thread_id: str,
    current_version: int,
    event_ids: Sequence[str],
    found: list[StoredEvent | None],
    hits: list[StoredEvent],
) -> Duplicate | Rejected:
    """A command some of whose ids were stored: a :class:`Duplicate` or a conflict."""
    first = hits[0]
    if len(hits) != len(found):
        problem = "some events of this append were stored before and some were not"
    elif any(s.thread_id != thread_id for s in hits):
        problem = f"it belongs to another thread, not {thread_id!r}"
    elif [s.seq for s in hits] != list(range(first.seq, first.seq + len(hits))):
        problem = "the events were stored in a different order or grouping"
    else:
        return Duplicate(
            first_seq=first.seq,
            positions=tuple(s.position for s in hits),
            version=current_version,
        )
    # like the embedded log, name the command's first event id that was stored before
    bad = next(e for e, s in zip(event_ids, found, strict=True) if s is not None)
    return Rejected(IdempotencyConflict(bad, problem))
