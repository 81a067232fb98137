"""Reading state through snapshots, on every snapshot store: damaged snapshots are
survived, and snapshot plus tail always equals a fold from the first event."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import EmbeddedEventLog, NewEvent, new_event
from eventstore.payloads import (
    Artifact,
    MemoryDelete,
    MemorySet,
    Message,
    Part,
    Payload,
    RoutingDecided,
    TaskStatusUpdate,
    ThreadRolledBack,
)
from projections import CountingObserver, MergeRules, SnapshotStore, StateReader
from projections.serial import checksum
from tests.contracts.snapshot_stores import pg_schema, snapshot_store, tamper  # noqa: F401

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
THREAD = "t-recover"
RULES = MergeRules()
MIXED_RULES = MergeRules(rules=(("count", "merge"), ("title", "manual")))


@pytest.fixture
async def event_log(tmp_path: Path) -> AsyncIterator[EmbeddedEventLog]:
    """A fresh embedded log."""
    async with EmbeddedEventLog(tmp_path / "log.db") as opened:
        yield opened


def at(seq: int) -> datetime:
    """When the event at ``seq`` occurred: one second per seq."""
    return T0 + timedelta(seconds=seq)


async def append_simple(log: EmbeddedEventLog, count: int) -> None:
    """``count`` events: messages and memory writes."""
    events: list[NewEvent] = []
    for seq in range(1, count + 1):
        payload: Payload = (
            Message(message_id=f"m{seq}", role="user", parts=(Part(text=f"hi {seq}"),))
            if seq % 3 == 0
            else MemorySet(key=f"k{seq % 4}", value_json=f'"v{seq}"')
        )
        events.append(new_event(payload, actor="planner", occurred_at=at(seq)))
    await log.append(THREAD, events)


@pytest.mark.parametrize("damage", ["body", "format", "undecodable"])
async def test_a_damaged_snapshot_is_skipped_and_the_state_rebuilt(
    snapshot_store: SnapshotStore,  # noqa: F811
    event_log: EmbeddedEventLog,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await append_simple(event_log, 30)
    filler = StateReader(event_log, snapshot_store, RULES, snapshot_every=10)
    await filler.state(THREAD)
    assert await snapshot_store.seqs(THREAD, RULES.digest) == [10, 20, 30]

    for seq in (20, 30):
        if damage == "body":  # a flipped byte: the checksum no longer matches
            stored = await snapshot_store.latest(THREAD, RULES.digest, max_seq=seq)
            assert stored is not None
            body = bytes([stored.body[0] ^ 0xFF]) + stored.body[1:]
            assert await tamper(snapshot_store, THREAD, seq, body=body) == 1
        elif damage == "format":  # written by some future version
            assert await tamper(snapshot_store, THREAD, seq, format=99) == 1
        else:  # checksum fine, contents not a state
            garbage = b"not zstd at all"
            changed = await tamper(
                snapshot_store, THREAD, seq, body=garbage, checksum=checksum(garbage)
            )
            assert changed == 1

    observer = CountingObserver()
    reader = StateReader(event_log, snapshot_store, RULES, snapshot_every=10, observer=observer)
    with caplog.at_level(logging.WARNING, logger="projections.reader"):
        got = await reader.state_at(THREAD, seq=25)
    assert got == await reader.scratch(THREAD, to_seq=25)
    assert observer.snapshots_rejected == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert THREAD in warnings[0].getMessage() and "seq 20" in warnings[0].getMessage()
    assert reader.snapshots_loaded == 1  # the one at seq 10

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="projections.reader"):
        live = await reader.state(THREAD)
    assert live == await reader.scratch(THREAD)
    assert observer.snapshots_rejected == 2  # seq 30 (seq 20 was rewritten by the last read)
    assert any(THREAD in r.getMessage() and "seq 30" in r.getMessage() for r in caplog.records)

    # the reads that rebuilt past 20 and 30 saved good snapshots there again
    for seq in (20, 30):
        healed = await snapshot_store.latest(THREAD, RULES.digest, max_seq=seq)
        assert healed is not None and healed.seq == seq
        assert await reader.decode_snapshot(healed) == await reader.scratch(THREAD, to_seq=seq)


async def test_every_snapshot_damaged_falls_back_to_the_first_event(
    snapshot_store: SnapshotStore,  # noqa: F811
    event_log: EmbeddedEventLog,
) -> None:
    await append_simple(event_log, 30)
    await StateReader(event_log, snapshot_store, RULES, snapshot_every=10).state(THREAD)
    for seq in (10, 20, 30):
        await tamper(snapshot_store, THREAD, seq, format=99)
    observer = CountingObserver()
    reader = StateReader(
        event_log, snapshot_store, RULES, snapshot_every=10, save_snapshots=False, observer=observer
    )
    assert await reader.state(THREAD) == await reader.scratch(THREAD)
    assert observer.snapshots_rejected == 3
    assert reader.snapshots_loaded == 0


def mixed_payloads(count: int, seed: int = 11) -> list[tuple[Payload, str, dict[str, int]]]:
    """``count`` payloads of many kinds (with actors and vectors), two rollbacks among them."""
    rng = random.Random(seed)
    out: list[tuple[Payload, str, dict[str, int]]] = []
    clocks = {"a": 0, "b": 0}
    for seq in range(1, count + 1):
        actor = rng.choice(["a", "b"])
        vector: dict[str, int] = {}
        roll = rng.random()
        payload: Payload
        if seq == 120:
            payload = ThreadRolledBack(to_seq=70, reason="bad tool output")
        elif seq == 201:
            payload = ThreadRolledBack(to_seq=199, reason="undo")
        elif roll < 0.25:
            payload = Message(
                message_id=f"m{seq}", role=rng.choice(["user", "agent"]), parts=(Part(text="x"),)
            )
        elif roll < 0.45:
            payload = MemorySet(key=f"k{rng.randrange(6)}", value_json=str(seq))
        elif roll < 0.5:
            payload = MemoryDelete(key=f"k{rng.randrange(6)}")
        elif roll < 0.6:  # concurrent writers: each actor knows only its own writes
            clocks[actor] += 1
            vector = {actor: clocks[actor]}
            payload = MemorySet(key=rng.choice(["count", "title"]), value_json=str(seq))
        elif roll < 0.75:
            payload = TaskStatusUpdate(
                task_id=f"task-{seq % 5}", state=rng.choice(["working", "completed", "failed"])
            )
        elif roll < 0.88:
            payload = Artifact(
                task_id=f"task-{seq % 5}",
                artifact_id=f"art-{seq % 3}",
                parts=(Part(text=f"chunk {seq}"),),
                append=rng.random() < 0.5,
                last_chunk=rng.random() < 0.3,
            )
        else:
            payload = RoutingDecided(
                task_id=f"task-{seq % 5}",
                candidates=(),
                choice="planner",
                choice_kind="agent",
                confidence=0.5 + (seq % 5) / 10,
                rationale="fits",
                router="lexical",
                latency_ms=1.0,
            )
        out.append((payload, actor, vector))
    return out


async def test_state_at_through_snapshots_equals_a_fold_from_scratch(
    snapshot_store: SnapshotStore,  # noqa: F811
    event_log: EmbeddedEventLog,
) -> None:
    count = 250
    events = [
        new_event(payload, actor=actor, version_vector=vector or None, occurred_at=at(seq))
        for seq, (payload, actor, vector) in enumerate(mixed_payloads(count), start=1)
    ]
    for start in range(0, count, 50):
        await event_log.append(THREAD, events[start : start + 50])

    filler = StateReader(event_log, snapshot_store, MIXED_RULES, snapshot_every=25)
    assert await filler.state(THREAD) == await filler.scratch(THREAD)
    assert await snapshot_store.seqs(THREAD, MIXED_RULES.digest) == list(range(25, count + 1, 25))

    observer = CountingObserver()
    reader = StateReader(
        event_log, snapshot_store, MIXED_RULES, snapshot_every=25, observer=observer
    )
    points = sorted(
        set(range(0, count + 1, 7)) | {1, 24, 25, 26, 69, 70, 71, 119, 120, 121, 200, 201, 250}
    )
    for k in points:
        assert await reader.state_at(THREAD, seq=k) == await reader.scratch(THREAD, to_seq=k), k
    for k in (3, 25, 119, 120, 121, 199, 201, 237, 250):
        by_time = await reader.state_at(THREAD, at=at(k))
        assert by_time == await reader.scratch(THREAD, to_seq=k), k
    assert reader.snapshots_loaded > len(points) // 2  # snapshots did the heavy lifting
    assert observer.snapshots_rejected == 0
