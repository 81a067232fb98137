"""verify, last-consistent and rebuild on both backends."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

import pytest

from eventstore import new_event
from eventstore.payloads import MemorySet, Message, Part
from projections import (
    NothingToRollBack,
    Snapshot,
    SnapshotStore,
    SnapshotStoreUnavailable,
    StateReader,
    ThreadNotFound,
    last_consistent_seq,
    rebuild,
    verify,
)
from projections.serial import encode
from projections.verify import SAVE_BATCH, diff
from tests.projections.conftest import RULES, Kit

pytestmark = pytest.mark.anyio


async def test_verify_passes_on_a_healthy_thread(kit: Kit) -> None:
    for i in range(12):
        await kit.commands.set("t", f"k{i % 3}", str(i), actor="a")
    result = await verify(kit.reader, "t")
    assert result.ok and result.version == 12 and result.snapshots_checked == 2
    assert kit.observer.verifications == 1 and kit.observer.verify_failures == 0
    with pytest.raises(ThreadNotFound):
        await verify(kit.reader, "none")


async def test_verify_finds_a_snapshot_that_lies(kit: Kit) -> None:
    for i in range(7):
        await kit.commands.set("t", f"k{i}", str(i), actor="a")
    honest = await kit.reader.state_at("t", seq=5)
    # A snapshot with a valid checksum but the wrong content (a bug, or a hand edit).
    forged = dataclasses.replace(honest, memory={})
    await kit.store.save(encode(forged, RULES.digest))
    fresh = StateReader(kit.log, kit.store, RULES, snapshot_every=5)
    result = await verify(fresh, "t")
    assert not result.ok
    assert result.bad_snapshots == (5,)
    assert any(d.startswith("memory") for d in result.differences), result.differences


async def test_last_consistent_skips_back_over_unresolved_conflicts(kit: Kit) -> None:
    base = await kit.commands.set("t", "plan", '"a"', actor="p")
    assert base.state is not None
    context = base.state.memory["plan"].vector
    await kit.commands.set("t", "other", "1", actor="p")
    await kit.commands.set("t", "plan", '"b"', actor="p", context=context)
    await kit.commands.set("t", "plan", '"c"', actor="r", context=context)  # conflict at 4
    await kit.commands.set("t", "other", "2", actor="p")
    assert await last_consistent_seq(kit.reader, "t") == 3
    await kit.commands.rollback("t", to_seq=3, reason="undo the conflict", actor="h")
    with pytest.raises(NothingToRollBack, match="has no unresolved conflict"):
        await last_consistent_seq(kit.reader, "t")


async def test_last_consistent_needs_an_earlier_consistent_point(kit: Kit) -> None:
    with pytest.raises(ThreadNotFound):
        await last_consistent_seq(kit.reader, "none")


async def test_rebuild_replaces_every_snapshot_and_sets_the_checkpoint(kit: Kit) -> None:
    for i in range(11):
        await kit.commands.set(f"t{i % 2}", "x", str(i), actor="a")
    await kit.store.save_checkpoint("default", 1)
    seen: list[tuple[str, int]] = []
    result = await rebuild(kit.reader, progress=lambda t, n: seen.append((t, n)))
    assert (result.threads, result.events) == (2, 11)
    assert seen == [("t0", 6), ("t1", 5)]
    assert await kit.store.checkpoint("default") == await kit.log.head()
    assert await kit.store.seqs("t0", RULES.digest) == [5]
    assert await kit.store.seqs("t1", RULES.digest) == [5]


async def test_rebuild_stores_every_snapshot_through_batches(kit: Kit) -> None:
    # 70 threads of 5 events and one of 400 messages: more snapshots than a batch holds
    # (SAVE_BATCH), and a thread whose later snapshots share chunks with earlier ones
    # still waiting in the same batch.
    for i in range(70):
        events = [new_event(MemorySet(key="k", value_json=str(j)), actor="a") for j in range(5)]
        await kit.log.append(f"t{i:02d}", events)
    talk = [
        new_event(Message(message_id=f"m{j}", role="user", parts=(Part(text=f"#{j}"),)), actor="u")
        for j in range(400)
    ]
    for start in range(0, 400, 100):
        await kit.log.append("long", talk[start : start + 100], start)
    assert SAVE_BATCH < 70 + 400 // 5
    result = await rebuild(kit.reader)
    assert (result.threads, result.events) == (71, 750)
    assert kit.observer.snapshots_saved == 70 + 400 // 5
    assert await kit.store.seqs("long", RULES.digest) == list(range(5, 401, 5))
    fresh = StateReader(kit.log, kit.store, RULES, snapshot_every=5, save_snapshots=False)
    for seq in (5, 64 * 5, 400):
        assert await fresh.state_at("long", seq=seq) == await kit.reader.scratch("long", seq)
    assert fresh.observer.snapshots_rejected == 0
    assert await fresh.state("t69") == await kit.reader.scratch("t69")


class FailingSaves:
    """The snapshot store, unreachable whenever a batch of snapshots is saved."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def save_many(self, snapshots: Sequence[Snapshot]) -> None:
        raise SnapshotStoreUnavailable("test-store", f"saving {len(snapshots)} snapshots")


async def test_rebuild_raises_the_stores_error_itself(kit: Kit) -> None:
    for i in range(12):
        await kit.commands.set(f"t{i % 2}", "k", str(i), actor="a")
    failing = StateReader(
        kit.log, cast(SnapshotStore, FailingSaves(kit.store)), RULES, snapshot_every=5
    )
    with pytest.raises(SnapshotStoreUnavailable, match="saving 2 snapshots") as caught:
        await rebuild(failing)
    assert caught.value.retriable
    assert await kit.store.checkpoint("default") == 0  # not moved: the rebuild did not finish


def test_diff_names_paths() -> None:
    assert diff({"a": [1, {"b": 2}], "c": 1}, {"a": [1, {"b": 3}, 4], "d": 1}) == [
        "a: live has 2 items, rebuilt has 3",
        "a[1].b: live 2 != rebuilt 3",
        "c: live has 1, missing in rebuilt",
        "d: missing in live, rebuilt has 1",
    ]
