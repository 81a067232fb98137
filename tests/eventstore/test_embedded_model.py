"""Model-based test: random append histories against the embedded log and a plain model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EmbeddedEventLog, IdempotencyConflict, NewEvent, WrongExpectedVersion
from tests.samples import event

# An operation: (thread index, batch size, expected-version mode, retry index or None)
#   mode 0: no expectation; 1: the right version; 2: a stale/wrong version
ops = st.lists(
    st.tuples(
        st.integers(0, 3), st.integers(1, 3), st.integers(0, 2), st.none() | st.integers(0, 30)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_log_behaves_like_the_model(operations: list[tuple[int, int, int, int | None]]) -> None:
    anyio.run(_run, operations)


async def _run(operations: list[tuple[int, int, int, int | None]]) -> None:
    model: dict[str, list[str]] = {}  # thread -> event ids in seq order
    appended: list[tuple[str, list[NewEvent], tuple[int, ...]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedEventLog(Path(tmp) / "m.db") as log:
            for thread_i, size, mode, retry in operations:
                thread = f"t{thread_i}"
                if retry is not None and appended:
                    r_thread, r_events, r_positions = appended[retry % len(appended)]
                    result = await log.append(r_thread, r_events, expected_version=123456)
                    assert result.deduplicated and result.positions == r_positions
                    if r_thread != thread:
                        try:
                            await log.append(thread, r_events)
                        except IdempotencyConflict:
                            pass
                        else:
                            raise AssertionError("an event id was accepted in a second thread")
                    continue
                current = len(model.get(thread, []))
                expected = {0: None, 1: current, 2: current + 1}[mode]
                batch = [event() for _ in range(size)]
                try:
                    result = await log.append(thread, batch, expected_version=expected)
                except WrongExpectedVersion as exc:
                    assert mode == 2 and exc.current == current
                    continue
                assert mode != 2
                assert list(result.seqs) == list(range(current + 1, current + size + 1))
                model.setdefault(thread, []).extend(e.event_id for e in batch)
                appended.append((thread, batch, result.positions))
            for thread, ids in model.items():
                stored = await log.read_thread(thread)
                assert [e.event_id for e in stored] == ids
                assert [e.seq for e in stored] == list(range(1, len(ids) + 1))
                assert await log.version(thread) == len(ids)
            everything = await log.read_all(limit=10_000)
            assert [e.position for e in everything] == list(range(1, len(everything) + 1))
            assert len(everything) == sum(len(ids) for ids in model.values())
