"""ThreadCommands on both backends: memory writes with vectors, resolve, rollback, fork."""

from __future__ import annotations

import pytest

from eventstore import NO_THREAD, new_event
from eventstore.payloads import MemorySet, Message, Part
from projections import (
    NoConflict,
    PointNotFound,
    SiblingNotFound,
    ThreadExists,
    ThreadNotFound,
    next_vector,
)
from projections.commands import actor_counter
from tests.projections.conftest import Kit

pytestmark = pytest.mark.anyio


async def test_writes_follow_each_other_unless_given_an_old_context(kit: Kit) -> None:
    first = await kit.commands.set("t", "plan", '"a"', actor="p")
    assert first.state is not None
    context = first.state.memory["plan"].vector
    assert context == {"p": 1}
    second = await kit.commands.set("t", "plan", '"b"', actor="r")
    assert second.state is not None and second.state.memory["plan"].vector == {"p": 1, "r": 1}
    assert not second.state.memory["plan"].conflicted
    stale = await kit.commands.set("t", "plan", '"c"', actor="q", context=context)
    assert stale.state is not None
    key = stale.state.memory["plan"]
    assert key.conflicted and {s.value_json for s in key.siblings} == {'"b"', '"c"'}


async def test_every_write_gets_a_fresh_dot_for_its_actor(kit: Kit) -> None:
    await kit.commands.set("t", "a", "1", actor="p")
    await kit.commands.set("t", "b", "1", actor="p")
    state = await kit.reader.state("t")
    assert actor_counter(state, "p") == 2
    # Even with an empty context the actor's own counter moves on.
    assert next_vector(state, "c", "p", {}) == {"p": 3}


async def test_resolve_by_choice_or_value(kit: Kit) -> None:
    base = await kit.commands.set("t", "plan", '"a"', actor="p")
    assert base.state is not None
    context = base.state.memory["plan"].vector
    await kit.commands.set("t", "plan", '"b"', actor="p", context=context)
    both = await kit.commands.set("t", "plan", '"c"', actor="r", context=context)
    assert both.state is not None
    siblings = both.state.memory["plan"].siblings
    with pytest.raises(SiblingNotFound, match="siblings are"):
        await kit.commands.resolve("t", "plan", actor="h", choose="nope")
    with pytest.raises(ValueError, match="exactly one"):
        await kit.commands.resolve("t", "plan", actor="h")
    done = await kit.commands.resolve("t", "plan", actor="h", choose=siblings[1].event_id)
    assert done.state is not None
    settled = done.state.memory["plan"]
    assert not settled.conflicted and settled.value_json == siblings[1].value_json
    assert settled.siblings[0].source == "resolved"
    with pytest.raises(NoConflict, match="'plan' has no unresolved conflict"):
        await kit.commands.resolve("t", "plan", actor="h", value_json='"x"')
    (resolved,) = [e for e in await kit.log.read_thread("t") if e.type == "memory.Resolved"]
    assert set(resolved.payload.superseded_event_ids) == {s.event_id for s in siblings}  # type: ignore[attr-defined]


async def test_resolve_with_a_new_value(kit: Kit) -> None:
    base = await kit.commands.set("t", "plan", '"a"', actor="p")
    assert base.state is not None
    context = base.state.memory["plan"].vector
    await kit.commands.set("t", "plan", '"b"', actor="p", context=context)
    await kit.commands.set("t", "plan", '"c"', actor="r", context=context)
    done = await kit.commands.resolve("t", "plan", actor="h", value_json='"both"')
    assert done.state is not None and done.state.values()["plan"] == '"both"'


async def test_delete_is_a_write(kit: Kit) -> None:
    await kit.commands.set("t", "x", "1", actor="p")
    gone = await kit.commands.delete("t", "x", actor="p")
    assert gone.state is not None
    assert gone.state.values() == {} and gone.state.memory["x"].deleted


async def test_rollback_refuses_bad_targets(kit: Kit) -> None:
    with pytest.raises(ThreadNotFound):
        await kit.commands.rollback("none", to_seq=0, reason="r", actor="h")
    await kit.commands.set("t", "x", "1", actor="p")
    await kit.commands.set("t", "x", "2", actor="p")
    with pytest.raises(PointNotFound, match="from 0 to 1"):
        await kit.commands.rollback("t", to_seq=2, reason="r", actor="h")
    with pytest.raises(ValueError, match="needs a reason"):
        await kit.commands.rollback("t", to_seq=1, reason=" ", actor="h")
    empty = await kit.commands.rollback("t", to_seq=0, reason="start over", actor="h")
    assert empty.state is not None and empty.state.values() == {}


async def test_fork_refuses_an_existing_target_and_bad_points(kit: Kit) -> None:
    msg = Message(message_id="m", role="user", parts=(Part(text="hi"),))
    await kit.log.append("src", [new_event(msg, actor="u")])
    await kit.log.append(
        "taken", [new_event(MemorySet(key="k", value_json="1"), actor="u")], NO_THREAD
    )
    with pytest.raises(ThreadExists, match="already has 1 events"):
        await kit.commands.fork("src", at_seq=1, into="taken", actor="h")
    with pytest.raises(PointNotFound):
        await kit.commands.fork("src", at_seq=2, into="new", actor="h")
    with pytest.raises(ThreadNotFound):
        await kit.commands.fork("nothing", at_seq=1, into="new", actor="h")
    with pytest.raises(ValueError, match="new thread id"):
        await kit.commands.fork("src", at_seq=1, into="src", actor="h")


async def test_sync_mode_is_checked(kit: Kit) -> None:
    from projections import ThreadCommands

    with pytest.raises(ValueError, match="sync mode 'eager'"):
        ThreadCommands(kit.log, kit.reader, sync="eager")  # type: ignore[arg-type]
