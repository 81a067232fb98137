"""The sequencer's decision for one append command (``eventstore.decide``).

Unit tests pin each outcome and each conflict text (the embedded log's texts); property
tests run random command histories through ``decide`` against a plain model, and against
the embedded log itself, since both backends must agree.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EmbeddedEventLog, NewEvent
from eventstore.decide import Accepted, Duplicate, Rejected, StoredEvent, decide
from eventstore.errors import IdempotencyConflict, WrongExpectedVersion
from tests.samples import event

# thread "t" holds a1, a2, a3 at seqs 1..3 (positions 10..12); thread "u" holds b1 at seq 1
STORED = {
    "a1": StoredEvent("t", 1, 10),
    "a2": StoredEvent("t", 2, 11),
    "a3": StoredEvent("t", 3, 12),
    "b1": StoredEvent("u", 1, 13),
}


def _conflict(outcome: object) -> IdempotencyConflict:
    assert isinstance(outcome, Rejected)
    assert isinstance(outcome.error, IdempotencyConflict)
    return outcome.error


# --- accepted ---------------------------------------------------------------------------


def test_a_new_thread_starts_at_seq_1() -> None:
    assert decide("new", 0, None, ["x", "y"], STORED) == Accepted(first_seq=1, version=2)


def test_the_expected_version_0_creates_a_thread() -> None:
    assert decide("new", 0, 0, ["x"], STORED) == Accepted(first_seq=1, version=1)


def test_the_right_expected_version_appends_after_the_current_one() -> None:
    assert decide("t", 3, 3, ["x", "y"], STORED) == Accepted(first_seq=4, version=5)


def test_no_expected_version_appends_whatever_the_current_one() -> None:
    assert decide("t", 3, None, ["x"], {}) == Accepted(first_seq=4, version=4)


# --- wrong expected version -------------------------------------------------------------


@pytest.mark.parametrize("expected", [0, 2, 4, 99])
def test_a_stale_expected_version_is_rejected_with_the_current_one(expected: int) -> None:
    outcome = decide("t", 3, expected, ["x"], STORED)
    assert isinstance(outcome, Rejected)
    error = outcome.error
    assert isinstance(error, WrongExpectedVersion)
    assert (error.thread_id, error.expected, error.current) == ("t", expected, 3)
    assert str(error) == f"expected version {expected} of thread 't', current version is 3"
    assert not error.retriable


# --- duplicates -------------------------------------------------------------------------


def test_a_retry_returns_the_original_positions() -> None:
    outcome = decide("t", 3, None, ["a1", "a2", "a3"], STORED)
    assert outcome == Duplicate(first_seq=1, positions=(10, 11, 12), version=3)


def test_a_retry_skips_the_version_check_and_reports_the_current_version() -> None:
    # the thread moved on to version 7 since; the retry's stale expectation does not matter
    outcome = decide("t", 7, 0, ["a2", "a3"], STORED)
    assert outcome == Duplicate(first_seq=2, positions=(11, 12), version=7)


def test_a_retry_of_a_consecutive_part_is_a_duplicate_too() -> None:
    # the embedded log cannot tell the original grouping; consecutive seqs in order suffice
    assert decide("u", 1, 5, ["b1"], STORED) == Duplicate(1, (13,), 1)


# --- idempotency conflicts --------------------------------------------------------------


def test_some_stored_and_some_not_is_a_conflict() -> None:
    error = _conflict(decide("t", 3, 3, ["new", "a1"], STORED))
    assert error.event_id == "a1"  # the first id that was stored before
    assert error.detail == "some events of this append were stored before and some were not"
    assert str(error) == (
        "event_id 'a1' was already appended: "
        "some events of this append were stored before and some were not"
    )


def test_ids_of_another_thread_are_a_conflict() -> None:
    error = _conflict(decide("u", 1, None, ["a1", "a2"], STORED))
    assert (error.event_id, error.detail) == ("a1", "it belongs to another thread, not 'u'")


def test_ids_split_across_threads_are_a_conflict() -> None:
    error = _conflict(decide("t", 3, None, ["a3", "b1"], STORED))
    assert (error.event_id, error.detail) == ("a3", "it belongs to another thread, not 't'")


def test_ids_in_another_order_are_a_conflict() -> None:
    error = _conflict(decide("t", 3, None, ["a2", "a1"], STORED))
    assert error.event_id == "a2"
    assert error.detail == "the events were stored in a different order or grouping"


def test_ids_with_a_gap_are_a_conflict() -> None:
    error = _conflict(decide("t", 3, None, ["a1", "a3"], STORED))
    assert (error.event_id, error.detail) == (
        "a1",
        "the events were stored in a different order or grouping",
    )


def test_a_mixed_command_is_checked_for_idempotency_before_the_version() -> None:
    error = _conflict(decide("t", 3, 0, ["a1", "new"], STORED))
    assert error.detail.startswith("some events")


# --- invalid commands -------------------------------------------------------------------


def test_an_empty_command_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        decide("t", 3, None, [], STORED)


def test_a_command_repeating_an_id_is_a_bug() -> None:
    with pytest.raises(ValueError, match="repeats an event id"):
        decide("t", 3, None, ["x", "x"], STORED)


def test_outcomes_are_frozen_values() -> None:
    outcome = decide("t", 3, None, ["x"], STORED)
    assert isinstance(outcome, Accepted)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.version = 9  # type: ignore[misc]
    assert not hasattr(outcome, "__dict__")
    assert not hasattr(STORED["a1"], "__dict__")


# --- properties -------------------------------------------------------------------------

# An operation: (kind, thread index, batch size, expected-version mode, pick)
#   kind 0: fresh ids; 1: resubmit an accepted command; 2: resubmit it to another thread;
#        3: an accepted command's ids plus a fresh one
#   mode 0: no expectation; 1: the right version; 2: a wrong version
operations = st.lists(
    st.tuples(
        st.integers(0, 3), st.integers(0, 2), st.integers(1, 3), st.integers(0, 2), st.integers()
    ),
    min_size=1,
    max_size=50,
)
Op = tuple[int, int, int, int, int]
Command = tuple[str, list[str]]


class Model:
    """The log as plain values: where each id is stored, each thread's version, positions."""

    def __init__(self) -> None:
        self.stored: dict[str, StoredEvent] = {}
        self.versions: dict[str, int] = {}
        self.last_position = 0
        self.accepted: list[tuple[str, list[str], tuple[int, ...], int]] = []
        self.fresh = 0

    def new_ids(self, n: int) -> list[str]:
        self.fresh += n
        return [f"e{self.fresh - i}" for i in reversed(range(n))]

    def command(self, op: Op) -> tuple[Command, int | None]:
        """The command an operation stands for, and its expected version."""
        kind, thread_i, size, mode, pick = op
        thread = f"t{thread_i}"
        ids = self.new_ids(size)
        if kind and self.accepted:
            a_thread, a_ids, _, _ = self.accepted[pick % len(self.accepted)]
            if kind == 1:
                thread, ids = a_thread, a_ids
            elif kind == 2:
                thread, ids = f"other-{a_thread}", a_ids
            else:
                ids = [*a_ids, ids[0]]
        current = self.versions.get(thread, 0)
        return (thread, ids), {0: None, 1: current, 2: current + 1}[mode]

    def apply(
        self, thread: str, ids: list[str], expected: int | None
    ) -> Accepted | Duplicate | Rejected:
        current = self.versions.get(thread, 0)
        outcome = decide(thread, current, expected, ids, self.stored)
        if isinstance(outcome, Accepted):
            assert outcome == Accepted(current + 1, current + len(ids))
            positions = []
            for seq, event_id in enumerate(ids, start=outcome.first_seq):
                assert event_id not in self.stored, f"{event_id} stored twice"
                self.last_position += 1
                positions.append(self.last_position)
                self.stored[event_id] = StoredEvent(thread, seq, self.last_position)
            self.versions[thread] = outcome.version
            self.accepted.append((thread, ids, tuple(positions), outcome.first_seq))
        return outcome

    def check(self) -> None:
        """Every thread is gap-free; every accepted command is answered as a retry."""
        seqs: dict[str, list[int]] = {}
        for s in self.stored.values():
            seqs.setdefault(s.thread_id, []).append(s.seq)
        assert {t: sorted(v) for t, v in seqs.items()} == {
            t: list(range(1, v + 1)) for t, v in self.versions.items()
        }
        for thread, ids, positions, first_seq in self.accepted:
            current = self.versions[thread]
            outcome = decide(thread, current, current + 1, ids, self.stored)
            assert outcome == Duplicate(first_seq, positions, current)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_random_histories_keep_threads_gap_free_and_retries_idempotent(ops: list[Op]) -> None:
    model = Model()
    for op in ops:
        (thread, ids), expected = model.command(op)
        kind, mode = op[0], op[3]
        resubmitted = ids[0] in model.stored  # kinds 1-3 once something was accepted
        outcome = model.apply(thread, ids, expected)
        if not resubmitted:
            assert isinstance(outcome, Rejected if mode == 2 else Accepted)
        elif kind == 1:
            assert isinstance(outcome, Duplicate)
        else:
            assert isinstance(outcome, Rejected)
            assert isinstance(outcome.error, IdempotencyConflict)
        model.check()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_decide_agrees_with_the_embedded_log(ops: list[Op]) -> None:
    anyio.run(_agree, ops)


async def _agree(ops: list[Op]) -> None:
    model = Model()
    events: dict[str, NewEvent] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedEventLog(Path(tmp) / "d.db") as log:
            for op in ops:
                (thread, ids), expected = model.command(op)
                batch = [events.setdefault(i, event(event_id=i)) for i in ids]
                outcome = model.apply(thread, ids, expected)
                try:
                    result = await log.append(thread, batch, expected_version=expected)
                except (WrongExpectedVersion, IdempotencyConflict) as exc:
                    assert isinstance(outcome, Rejected)
                    assert type(outcome.error) is type(exc)
                    assert str(outcome.error) == str(exc)
                    continue
                if isinstance(outcome, Accepted):
                    assert not result.deduplicated
                    assert result.positions == model.accepted[-1][2]
                else:
                    assert isinstance(outcome, Duplicate)
                    assert result.deduplicated
                    assert result.positions == outcome.positions
                assert (result.first_seq, result.version) == (outcome.first_seq, outcome.version)
