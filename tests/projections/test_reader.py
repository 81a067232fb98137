"""StateReader on both backends: live state, time travel, rollback chains, forks."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from eventstore import new_event
from eventstore.payloads import MemorySet, Message, Part, ThreadForked, ThreadRolledBack
from projections import (
    LineageTooDeep,
    PointNotFound,
    StateCache,
    StateReader,
    ThreadNotFound,
    ThreadState,
)
from projections.serial import to_json
from tests.projections.conftest import RULES, Kit
from tests.samples import T0

pytestmark = pytest.mark.anyio


def msg(text: str) -> Message:
    return Message(message_id=f"m-{text}", role="user", parts=(Part(text=text),))


async def write(kit: Kit, thread: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        at = T0 + timedelta(seconds=i)
        if i % 3 == 0:
            await kit.log.append(thread, [new_event(msg(f"hi {i}"), actor="u", occurred_at=at)])
        else:
            await kit.commands.set(
                thread, f"k{i % 4}", json.dumps(i), actor=f"a{i % 2}", occurred_at=at, sync="lazy"
            )


async def test_unknown_thread_is_empty_and_time_travel_refuses_it(kit: Kit) -> None:
    state = await kit.reader.state("nobody")
    assert state == ThreadState(thread_id="nobody")
    with pytest.raises(ThreadNotFound, match="'nobody' has no events"):
        await kit.reader.state_at("nobody", seq=1)


async def test_state_at_seq_time_and_event_id_agree(kit: Kit) -> None:
    await write(kit, "t", 23)
    events = await kit.log.read_thread("t")
    for k in (0, 1, 4, 5, 6, 11, 23):
        by_seq = await kit.reader.state_at("t", seq=k)
        assert by_seq == await kit.reader.scratch("t", to_seq=k)
        assert by_seq.version == k
        if k:
            assert await kit.reader.state_at("t", event_id=events[k - 1].event_id) == by_seq
            assert await kit.reader.state_at("t", at=events[k - 1].occurred_at) == by_seq
    assert (await kit.reader.state_at("t", at=T0 - timedelta(days=1))).version == 0
    assert await kit.store.seqs("t", RULES.digest) == [5, 10, 15, 20]


async def test_bad_points_are_refused_by_name(kit: Kit) -> None:
    await write(kit, "t", 3)
    await write(kit, "u", 1)
    with pytest.raises(PointNotFound, match=r"seq 4.*seqs 1 to 3"):
        await kit.reader.state_at("t", seq=4)
    with pytest.raises(PointNotFound, match="no event has this id"):
        await kit.reader.state_at("t", event_id="nope")
    (other,) = await kit.log.read_thread("u")
    with pytest.raises(PointNotFound, match="belongs to thread 'u'"):
        await kit.reader.state_at("t", event_id=other.event_id)
    with pytest.raises(ValueError, match="exactly one"):
        await kit.reader.state_at("t", seq=1, at=T0)


async def test_time_travel_uses_the_prefix_even_when_clocks_go_backwards(kit: Kit) -> None:
    times = [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=5), T0 + timedelta(seconds=20)]
    for i, at in enumerate(times):
        await kit.log.append("t", [new_event(msg(str(i)), actor="u", occurred_at=at)])
    # As of +7 s: event 2 (at +10 s) had not happened, so the state stops after event 1,
    # although event 3 occurred at +5 s.
    assert (await kit.reader.state_at("t", at=T0 + timedelta(seconds=7))).version == 1
    assert (await kit.reader.state_at("t", at=T0 + timedelta(seconds=15))).version == 3


async def test_rollback_then_rollback_of_the_rollback(kit: Kit) -> None:
    for i in range(1, 7):
        await kit.commands.set("t", "x", str(i), actor="a")
    first = await kit.commands.rollback("t", to_seq=2, reason="bad", actor="h")
    assert first.state is not None
    assert first.state.values() == {"x": "2"} and first.state.version == 7
    later = await kit.commands.set("t", "y", '"after"', actor="a")
    assert later.state is not None and later.state.values() == {"x": "2", "y": '"after"'}
    undo = await kit.commands.rollback("t", to_seq=6, reason="undo the rollback", actor="h")
    assert undo.state is not None
    assert undo.state.values() == {"x": "6"}
    assert [(r.seq, r.to_seq) for r in undo.state.lineage.rollbacks] == [(7, 2), (9, 6)]
    assert (await kit.reader.state_at("t", seq=8)).values() == {"x": "2", "y": '"after"'}
    assert await kit.reader.state("t") == await kit.reader.scratch("t")
    assert len(await kit.log.read_thread("t")) == 9  # nothing was deleted


async def test_fork_starts_from_the_source_state_and_lives_apart(kit: Kit) -> None:
    await write(kit, "src", 12)
    forked = await kit.commands.fork("src", at_seq=7, into="copy", actor="h", reason="what if")
    assert forked.state is not None
    source_at_7 = await kit.reader.state_at("src", seq=7)
    assert forked.state.values() == source_at_7.values()
    assert forked.state.conversation == source_at_7.conversation
    assert forked.state.lineage.forked_from is not None
    assert forked.state.lineage.forked_from.source_seq == 7
    await kit.commands.set("copy", "k1", '"only in the copy"', actor="a0")
    assert (await kit.reader.state("copy")).values()["k1"] == '"only in the copy"'
    assert (await kit.reader.state("src")).values()["k1"] != '"only in the copy"'
    # A vector-less write in the fork follows everything inherited (its clock continues).
    await kit.log.append("copy", [new_event(MemorySet(key="k2", value_json='"raw"'), actor="x")])
    assert (await kit.reader.state("copy")).values()["k2"] == '"raw"'
    assert await kit.reader.state("copy") == await kit.reader.scratch("copy")


async def test_forged_fork_cycle_is_refused(kit: Kit) -> None:
    for me, other in (("a", "b"), ("b", "a")):
        event = new_event(ThreadForked(source_thread_id=other, source_seq=1), actor="x")
        await kit.log.append(me, [event])
    with pytest.raises(LineageTooDeep, match="deeper than 64"):
        await StateReader(kit.log, None, RULES).state("a")


async def test_nonsense_rollback_in_the_log_changes_nothing(kit: Kit) -> None:
    await kit.commands.set("t", "x", "1", actor="a")
    event = new_event(ThreadRolledBack(to_seq=5, reason="forged"), actor="x")
    await kit.log.append("t", [event])
    state = await kit.reader.state("t")
    assert state.version == 2 and state.values() == {"x": "1"} and not state.lineage.rollbacks


async def test_cache_never_serves_older_than_the_callers_version(kit: Kit) -> None:
    cache = StateCache(max_threads=2, ttl=60, clock=lambda: 0.0)
    reader = StateReader(kit.log, kit.store, RULES, cache=cache)
    await kit.commands.set("t", "x", "1", actor="a")
    assert (await reader.state("t")).version == 1
    result = await kit.commands.set("t", "x", "2", actor="a", sync="lazy")
    fresh = await reader.state("t", min_version=result.append.version)
    assert fresh.values() == {"x": "2"}
    assert cache.get("t", min_version=3) is None
    assert cache.get("t", min_version=2) == fresh


async def test_snapshot_and_tail_fold_like_a_full_replay(kit: Kit) -> None:
    await write(kit, "t", 40)
    await kit.commands.rollback("t", to_seq=17, reason="r", actor="h")
    await write(kit, "t", 12, start=40)
    full = await kit.reader.scratch("t")
    assert to_json(await kit.reader.state("t")) == to_json(full)
    fresh = StateReader(kit.log, kit.store, RULES, snapshot_every=5)
    for k in range(0, full.version + 1, 3):
        assert await fresh.state_at("t", seq=k) == await kit.reader.scratch("t", to_seq=k)
    assert fresh.snapshots_loaded > 0


async def test_chunks_count_as_stored_only_once_saved(kit: Kit) -> None:
    await write(kit, "t", 6)
    state = await kit.reader.scratch("t")
    reader = StateReader(kit.log, kit.store, RULES, snapshot_every=5)
    first = reader.snapshot_of(state)
    assert first is not None and first.chunks
    # Not stored yet (a batch still waiting, or a save that failed): sent again.
    again = reader.snapshot_of(state)
    assert again is not None and again.chunks == first.chunks
    await kit.store.save(first)
    reader.saved(first)
    later = reader.snapshot_of(state)
    assert later is not None and later.chunks == {}
    assert reader.observer.snapshots_saved == 1
    assert StateReader(kit.log, kit.store, RULES, save_snapshots=False).snapshot_of(state) is None
