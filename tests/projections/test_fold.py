"""Folding events into thread state: each part of the state, rollbacks, forks, the laws."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.envelope import RecordedEvent
from eventstore.payloads import (
    PAYLOAD_TYPES,
    Artifact,
    MemoryDelete,
    MemoryMerged,
    MemoryResolved,
    MemorySet,
    Message,
    Part,
    Payload,
    RoutingDecided,
    RoutingEscalated,
    RoutingFeedback,
    TaskStatusUpdate,
    ThreadForked,
    ThreadRolledBack,
    ValueKind,
)
from projections.errors import GapInThread
from projections.fold import Needed, apply_fork, apply_rollback, fold, needs
from projections.memory import MergeRules, Write
from projections.serial import decode, encode
from projections.state import (
    ArtifactView,
    ConversationEntry,
    ForkRecord,
    Lineage,
    RollbackRecord,
    RoutingRecord,
    TaskStatusEntry,
    TaskView,
    ThreadState,
)
from projections.vectors import LOG_CLOCK
from tests.samples import SAMPLES, T0, records, text_message

RULES = MergeRules.from_mapping({"count": "merge", "title": "manual"})


def rec(
    seq: int,
    payload: Payload,
    *,
    thread: str = "t",
    actor: str = "planner",
    at: int | None = None,
    vector: Mapping[str, int] | None = None,
    event_id: str | None = None,
    tenant: str = "default",
) -> RecordedEvent:
    """The event at ``seq`` of ``thread`` (at ``T0 + at`` seconds; default ``at = seq``)."""
    return RecordedEvent(
        event_id=event_id if event_id is not None else f"{thread}-{seq}",
        thread_id=thread,
        tenant=tenant,
        seq=seq,
        type=payload.TYPE,
        occurred_at=T0 + timedelta(seconds=seq if at is None else at),
        actor=actor,
        version_vector=vector if vector is not None else {},
        causation_id=None,
        correlation_id=None,
        idempotency_key=None,
        payload=payload,
    )


def thread(*payloads: Payload, name: str = "t") -> list[RecordedEvent]:
    return [rec(seq, p, thread=name) for seq, p in enumerate(payloads, start=1)]


def fold_all(events: Sequence[RecordedEvent], state: ThreadState | None = None) -> ThreadState:
    """Fold events that need no other state (no rollback, no fork)."""
    start = state if state is not None else ThreadState(thread_id=events[0].thread_id)
    out, used = fold(start, events, RULES)
    assert used == len(events)
    return out


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def put(key: str, value: object, kind: ValueKind = "value") -> MemorySet:
    return MemorySet(key=key, value_json=json.dumps(value), kind=kind)


# --- the parts of the state --------------------------------------------------------------


def test_folding_nothing_returns_the_same_state() -> None:
    start = ThreadState(thread_id="t")
    assert fold(start, [], RULES) == (start, 0)
    assert fold(start, [], RULES)[0] is start
    assert start.version == 0
    assert start.updated_at is None
    assert start.high_time is None


def test_messages_make_the_conversation() -> None:
    hello, reply = text_message("hello"), text_message("hi there", "agent")
    events = thread(hello, reply)
    state = fold_all(events)
    assert state.conversation == (
        ConversationEntry(
            thread_id="t", seq=1, event_id="t-1", actor="planner", occurred_at=at(1), message=hello
        ),
        ConversationEntry(
            thread_id="t", seq=2, event_id="t-2", actor="planner", occurred_at=at(2), message=reply
        ),
    )
    assert state.version == 2
    assert state.updated_at == at(2)
    assert state.high_time == at(2)
    assert state.tasks == {}
    assert state.memory == {}


def test_a_task_gets_its_status_history_and_stays_final() -> None:
    working = TaskStatusUpdate(task_id="task-1", state="working")
    done = TaskStatusUpdate(
        task_id="task-1", state="completed", final=True, message=text_message("done", "agent")
    )
    late = TaskStatusUpdate(task_id="task-1", state="unknown")
    events = thread(working, done, late)

    first = fold_all(events[:1])
    assert first.tasks == {
        "task-1": TaskView(
            task_id="task-1",
            context_id=None,
            state="working",
            final=False,
            history=(
                TaskStatusEntry(
                    seq=1, event_id="t-1", actor="planner", occurred_at=at(1), state="working"
                ),
            ),
            artifacts=(),
            message_ids=(),
            created_seq=1,
            updated_seq=1,
        )
    }
    task = fold_all(events).tasks["task-1"]
    assert [h.state for h in task.history] == ["working", "completed", "unknown"]
    assert task.history[1].message == done.message
    assert task.state == "unknown"
    assert task.final, "once final, a task stays final"
    assert (task.created_seq, task.updated_seq) == (1, 3)


def test_a_task_named_by_a_message_is_submitted_and_lists_the_message() -> None:
    ask = Message(message_id="m1", role="user", parts=(Part(text="go"),), task_id="task-1")
    chat = text_message("no task")
    again = Message(
        message_id="m2", role="agent", parts=(Part(text="ok"),), task_id="task-1", context_id="c"
    )
    state = fold_all(thread(ask, chat, again))
    assert len(state.conversation) == 3
    assert list(state.tasks) == ["task-1"]
    task = state.tasks["task-1"]
    assert task.state == "submitted"
    assert not task.final
    assert task.history == ()
    assert task.message_ids == ("m1", "m2")
    assert (task.created_seq, task.updated_seq) == (1, 3)


def test_a_task_gets_its_context_from_a_later_event_and_keeps_the_first() -> None:
    events = thread(
        TaskStatusUpdate(task_id="task-1", state="working"),
        Message(message_id="m1", role="agent", parts=(), task_id="task-1", context_id="ctx-1"),
        TaskStatusUpdate(task_id="task-1", context_id="ctx-2", state="completed"),
    )
    assert fold_all(events[:1]).tasks["task-1"].context_id is None
    assert fold_all(events[:2]).tasks["task-1"].context_id == "ctx-1"
    assert fold_all(events).tasks["task-1"].context_id == "ctx-1"


def test_artifact_chunks_add_up() -> None:
    first = Artifact(
        task_id="task-1",
        artifact_id="a1",
        context_id="ctx",
        name="report.md",
        description="the report",
        parts=(Part(text="# Report"),),
        last_chunk=False,
    )
    more = Artifact(task_id="task-1", artifact_id="a1", parts=(Part(text="body"),), append=True)
    other = Artifact(task_id="task-1", artifact_id="a2", parts=(Part(text="x"),), last_chunk=False)
    restart = Artifact(
        task_id="task-1", artifact_id="a2", name="y.txt", parts=(Part(text="y"),), last_chunk=False
    )
    events = thread(first, other, more, restart)

    task = fold_all(events[:1]).tasks["task-1"]
    assert task.context_id == "ctx"
    assert task.state == "submitted"
    assert task.artifacts == (
        ArtifactView(
            artifact_id="a1",
            name="report.md",
            description="the report",
            parts=(Part(text="# Report"),),
            complete=False,
            updated_seq=1,
        ),
    )
    task = fold_all(events).tasks["task-1"]
    assert [a.artifact_id for a in task.artifacts] == ["a1", "a2"], "in order of first chunk"
    a1, a2 = task.artifacts
    assert a1 == ArtifactView(
        artifact_id="a1",
        name="report.md",
        description="the report",
        parts=(Part(text="# Report"), Part(text="body")),
        complete=True,
        updated_seq=3,
    )
    # a chunk that does not append replaces the parts
    assert a2 == ArtifactView(
        artifact_id="a2",
        name="y.txt",
        description=None,
        parts=(Part(text="y"),),
        complete=False,
        updated_seq=4,
    )
    assert (task.created_seq, task.updated_seq) == (1, 4)


def test_an_appending_first_chunk_is_the_whole_artifact_so_far() -> None:
    chunk = Artifact(task_id="t1", artifact_id="a", parts=(Part(text="p"),), append=True)
    (view,) = fold_all(thread(chunk)).tasks["t1"].artifacts
    assert view.parts == (Part(text="p"),)
    assert view.name is None
    assert view.complete


def test_routing_events_are_recorded_in_order() -> None:
    decided = SAMPLES["routing.Decided"]
    escalated = SAMPLES["routing.Escalated"]
    feedback = SAMPLES["routing.Feedback"]
    assert isinstance(decided, RoutingDecided)
    assert isinstance(escalated, RoutingEscalated)
    assert isinstance(feedback, RoutingFeedback)
    state = fold_all(thread(decided, escalated, feedback))
    assert state.routing == tuple(
        RoutingRecord(seq=s, event_id=f"t-{s}", actor="planner", occurred_at=at(s), decision=d)
        for s, d in ((1, decided), (2, escalated), (3, feedback))
    )
    assert state.tasks == {}, "routing does not create tasks"


@pytest.mark.parametrize(
    "event_type", ["command.Received", "command.Rejected", "llm.Completed", "memory.Conflict"]
)
def test_history_only_events_change_only_the_version(event_type: str) -> None:
    start = fold_all(thread(text_message("x")))
    state = fold_all([rec(2, SAMPLES[event_type], at=0)], start)
    assert state == dataclasses.replace(start, version=2, updated_at=at(0))


def test_high_time_is_the_latest_time_even_when_times_go_backwards() -> None:
    events = [rec(1, text_message("a"), at=5), rec(2, text_message("b"), at=2)]
    state = fold_all(events)
    assert state.updated_at == at(2)
    assert state.high_time == at(5)


def test_values_and_conflicts_leave_out_deleted_and_in_conflict_keys() -> None:
    events = [
        rec(1, put("a", 1)),
        rec(2, MemoryDelete(key="gone")),
        rec(3, put("title", "A"), vector={"x": 1}),
        rec(4, put("title", "B"), vector={"y": 1}),
        rec(5, put("other", "o"), vector={"x": 1}),
        rec(6, put("other", "p"), vector={"y": 1}),
    ]
    state = fold_all(events)
    assert state.values() == {"a": "1", "other": '"p"'}
    assert state.memory["gone"].deleted
    assert [k.key for k in state.conflicts()] == ["title"]
    assert state.conflicts()[0].policy == "manual"


# --- memory ------------------------------------------------------------------------------


def test_memory_writes_become_key_states_under_their_rules() -> None:
    events = [
        rec(1, put("count", 1, "counter"), vector={"a": 1}),
        rec(2, put("count", 3, "counter"), vector={"a": 1, "b": 1}, actor="b"),
        rec(3, put("count", 6, "counter"), vector={"a": 1, "c": 1}, actor="c"),
        rec(4, MemoryDelete(key="scratch")),
    ]
    state = fold_all(events)
    count = state.memory["count"]
    assert count.policy == "merge"
    assert count.value_json == "8"
    assert count.kind == "counter"
    assert [w.event_id for w in count.history] == ["t-1", "t-2", "t-3"]
    scratch = state.memory["scratch"]
    assert scratch.policy == "last-write-wins"
    assert scratch.deleted
    assert scratch.siblings == (
        Write(
            event_id="t-4",
            seq=4,
            actor="planner",
            occurred_at=at(4),
            vector={LOG_CLOCK: 4},
            value_json=None,
            kind="value",
            source="delete",
        ),
    )


def test_a_resolve_settles_a_manual_conflict_and_merged_writes_count_as_writes() -> None:
    resolved = MemoryResolved(
        key="title", value_json='"B"', chosen_event_id="t-2", superseded_event_ids=("t-1",)
    )
    merged = MemoryMerged(
        key="count", value_json="4", kind="counter", policy="merge", merged_event_ids=()
    )
    events = [
        rec(1, put("title", "A"), vector={"x": 1}),
        rec(2, put("title", "B"), vector={"y": 1}),
        rec(3, resolved, vector={"x": 1, "y": 1, "h": 1}, actor="h"),
        rec(4, merged, vector={"m": 1}),
    ]
    assert fold_all(events[:2]).memory["title"].conflicted
    state = fold_all(events)
    title = state.memory["title"]
    assert not title.conflicted
    assert title.value_json == '"B"'
    assert title.siblings[0].source == "resolved"
    assert state.memory["count"].siblings[0].source == "merged"
    assert state.memory["count"].value_json == "4"


def test_writes_without_vectors_are_ordered_by_seq() -> None:
    state = fold_all([rec(1, put("k", 1), at=9), rec(2, put("k", 2), at=1)])
    key = state.memory["k"]
    assert [w.vector for w in key.siblings] == [{LOG_CLOCK: 2}]
    assert key.value_json == "2", "the later seq wins though its time is earlier"


def test_a_vector_of_zeros_counts_as_no_vector() -> None:
    state = fold_all([rec(1, put("k", 1)), rec(2, put("k", 2), vector={"a": 0})])
    assert [w.vector for w in state.memory["k"].siblings] == [{LOG_CLOCK: 2}]


def test_writes_without_vectors_are_concurrent_with_writes_with_vectors() -> None:
    events = [
        rec(1, put("k", "implicit"), at=5),
        rec(2, put("k", "explicit"), vector={"a": 9}, at=1),
        rec(3, put("title", "implicit")),
        rec(4, put("title", "explicit"), vector={"a": 9}),
    ]
    state = fold_all(events)
    assert [w.vector for w in state.memory["k"].siblings] == [{"a": 9}, {LOG_CLOCK: 1}]
    assert state.memory["k"].value_json == '"implicit"', "last-write-wins decides by time"
    assert state.memory["title"].conflicted


# --- duplicates, gaps, other threads -----------------------------------------------------


def test_events_already_applied_are_skipped() -> None:
    events = thread(text_message("a"), put("k", 1), text_message("b"), put("k", 2))
    once = fold_all(events[:3])
    assert fold(once, events[:3], RULES) == (once, 3)
    assert fold(once, events[:3], RULES)[0] is once
    assert fold_all(events[1:], once) == fold_all(events)
    assert fold_all([*events, *events]) == fold_all(events)


def test_a_skipped_seq_is_a_gap() -> None:
    events = thread(text_message("a"), text_message("b"), text_message("c"))
    with pytest.raises(GapInThread) as caught:
        fold(ThreadState(thread_id="t"), [events[0], events[2]], RULES)
    assert (caught.value.thread_id, caught.value.expected_seq, caught.value.found_seq) == (
        "t",
        2,
        3,
    )
    with pytest.raises(GapInThread, match="expected the event at seq 1, found seq 2"):
        fold(ThreadState(thread_id="t"), events[1:], RULES)


def test_a_rollback_past_a_gap_is_a_gap() -> None:
    start = fold_all(thread(text_message("a")))
    with pytest.raises(GapInThread, match="expected the event at seq 2, found seq 3"):
        fold(start, [rec(3, ThreadRolledBack(to_seq=1, reason="r"))], RULES)
    with pytest.raises(GapInThread, match="expected the event at seq 1, found seq 2"):
        fold(ThreadState(thread_id="t"), [rec(2, ThreadRolledBack(to_seq=1, reason="r"))], RULES)


@pytest.mark.parametrize(
    "payload",
    [
        text_message("x"),
        ThreadRolledBack(to_seq=0, reason="r"),
        ThreadForked(source_thread_id="src", source_seq=1),
    ],
)
def test_an_event_of_another_thread_is_refused(payload: Payload) -> None:
    with pytest.raises(ValueError, match="event u-1 of thread 'u' folded into thread 't'"):
        fold(ThreadState(thread_id="t"), [rec(1, payload, thread="u")], RULES)


def test_an_already_applied_seq_of_another_thread_is_refused_too() -> None:
    start = fold_all(thread(text_message("a")))
    with pytest.raises(ValueError, match="of thread 'u' folded into thread 't'"):
        fold(start, [rec(1, text_message("a"), thread="u")], RULES)


# --- rollbacks ---------------------------------------------------------------------------


def _history() -> list[RecordedEvent]:
    return [
        rec(1, text_message("one")),
        rec(2, put("k", 1)),
        rec(3, TaskStatusUpdate(task_id="task-1", state="working"), at=30),
        rec(4, SAMPLES["routing.Decided"]),
        rec(5, ThreadRolledBack(to_seq=2, reason="bad tool output"), actor="human", at=20),
        rec(6, put("k", 2)),
    ]


def test_the_fold_stops_at_a_rollback_and_says_what_it_needs() -> None:
    events = _history()
    state, used = fold(ThreadState(thread_id="t"), events, RULES)
    assert used == 4
    assert state == fold_all(events[:4])
    assert needs(state, events[4]) == Needed("t", 2)
    assert needs(state, events[3]) is None, "already applied"
    assert needs(state, rec(5, text_message("x"))) is None


def test_a_rollback_takes_the_content_of_its_target() -> None:
    events = _history()
    current = fold_all(events[:4])
    target = fold_all(events[:2])
    state = apply_rollback(current, target, events[4])
    record = RollbackRecord(
        seq=5, event_id="t-5", actor="human", occurred_at=at(20), to_seq=2, reason="bad tool output"
    )
    assert state == dataclasses.replace(
        target,
        version=5,
        updated_at=at(20),
        high_time=at(30),  # the undone event at seq 3 is still part of the thread
        lineage=Lineage(rollbacks=(record,)),
    )
    assert state.tasks == {}
    assert state.routing == ()
    assert state.memory == target.memory
    after = fold_all(events[5:], state)
    assert after.version == 6
    assert after.memory["k"].value_json == "2"
    assert after.lineage == state.lineage


def test_a_rollback_after_the_latest_time_moves_high_time() -> None:
    events = thread(text_message("a"), ThreadRolledBack(to_seq=0, reason="all"))
    current = fold_all(events[:1])
    state = apply_rollback(current, ThreadState(thread_id="t"), events[1])
    assert state.high_time == at(2)
    assert state.conversation == ()


def test_the_lineage_keeps_every_rollback_even_undone_ones() -> None:
    events = thread(
        text_message("a"),
        text_message("b"),
        ThreadRolledBack(to_seq=1, reason="first"),
        text_message("c"),
        ThreadRolledBack(to_seq=3, reason="second"),
    )
    one = fold_all(events[:1])
    after_first = apply_rollback(fold_all(events[:2]), one, events[2])
    assert after_first.lineage.rollbacks[0].to_seq == 1
    at_four = fold_all(events[3:4], after_first)
    # the second rollback goes back to seq 3: the state right after the first rollback
    after_second = apply_rollback(at_four, after_first, events[4])
    assert [r.reason for r in after_second.lineage.rollbacks] == ["first", "second"]
    assert after_second.conversation == one.conversation
    assert after_second.version == 5


def test_a_rollback_keeps_the_current_thread_tenant_origin_and_clock() -> None:
    forked = apply_fork(
        fold_all(thread(put("k", 1), name="src")),
        rec(1, ThreadForked(source_thread_id="src", source_seq=1), tenant="acme"),
    )
    current = fold_all([rec(2, put("k", 2))], forked)
    target = dataclasses.replace(forked, thread_id="elsewhere", tenant="x", clock_offset=9)
    state = apply_rollback(current, target, rec(3, ThreadRolledBack(to_seq=1, reason="r")))
    assert (state.thread_id, state.tenant, state.clock_offset) == ("t", "acme", 1)
    assert state.lineage.forked_from == forked.lineage.forked_from


def test_apply_rollback_checks_the_thread_and_seq() -> None:
    current = fold_all(thread(text_message("a"), text_message("b")))
    target = fold_all(thread(text_message("a")))
    with pytest.raises(ValueError, match="thread 'u'"):
        apply_rollback(current, target, rec(3, ThreadRolledBack(to_seq=1, reason=""), thread="u"))
    with pytest.raises(GapInThread):
        apply_rollback(current, target, rec(4, ThreadRolledBack(to_seq=1, reason="")))


@pytest.mark.parametrize("to_seq", [3, 4, -1])
def test_a_rollback_to_itself_a_later_seq_or_before_the_start_changes_nothing(to_seq: int) -> None:
    start = fold_all(thread(text_message("a"), put("k", 1)))
    event = rec(3, ThreadRolledBack(to_seq=to_seq, reason="nonsense"))
    assert needs(start, event) is None
    state = fold_all([event], start)
    assert state == dataclasses.replace(start, version=3, updated_at=at(3), high_time=at(3))


def test_a_rollback_to_seq_zero_needs_the_empty_state() -> None:
    start = fold_all(thread(text_message("a")))
    assert needs(start, rec(2, ThreadRolledBack(to_seq=0, reason="all"))) == Needed("t", 0)


# --- forks -------------------------------------------------------------------------------


def test_the_fold_stops_at_a_fork_and_says_what_it_needs() -> None:
    fork = rec(1, ThreadForked(source_thread_id="src", source_seq=2, reason="what-if"))
    start = ThreadState(thread_id="t")
    assert fold(start, [fork, rec(2, text_message("x"))], RULES) == (start, 0)
    assert needs(start, fork) == Needed("src", 2)


def test_a_fork_starts_from_the_source_state_under_its_own_name() -> None:
    source = [
        rec(1, text_message("a"), thread="src", at=50),
        rec(2, put("k", 1), thread="src"),
        rec(3, text_message("b"), thread="src"),
    ]
    base = fold_all(source[:2])
    fork = rec(
        1,
        ThreadForked(source_thread_id="src", source_seq=2, reason="what-if"),
        actor="human",
        at=10,
        tenant="acme",
    )
    state = apply_fork(base, fork)
    assert state == dataclasses.replace(
        base,
        thread_id="t",
        tenant="acme",
        version=1,
        updated_at=at(10),
        high_time=at(10),
        lineage=Lineage(
            forked_from=ForkRecord(
                event_id="t-1",
                actor="human",
                occurred_at=at(10),
                source_thread_id="src",
                source_seq=2,
                reason="what-if",
            )
        ),
        clock_offset=2,
    )
    assert state.conversation[0].thread_id == "src", "history entries keep their source thread"


def test_a_fork_of_a_fork_adds_up_the_clock_offsets() -> None:
    first = apply_fork(
        fold_all(thread(put("k", 1), put("k", 2), name="a")),
        rec(1, ThreadForked(source_thread_id="a", source_seq=2), thread="b"),
    )
    b = fold_all([rec(2, put("k", 3), thread="b"), rec(3, put("k", 4), thread="b")], first)
    second = apply_fork(b, rec(1, ThreadForked(source_thread_id="b", source_seq=3), thread="c"))
    assert (first.clock_offset, second.clock_offset) == (2, 5)
    assert second.lineage.rollbacks == ()


def test_writes_without_vectors_in_a_fork_follow_the_sources_writes() -> None:
    base = fold_all(thread(put("k", 1), put("k", 2), name="src"))
    forked = apply_fork(base, rec(1, ThreadForked(source_thread_id="src", source_seq=2)))
    state = fold_all([rec(2, put("k", 3), at=0)], forked)
    key = state.memory["k"]
    assert [w.vector for w in key.siblings] == [{LOG_CLOCK: 4}]
    assert key.value_json == "3"


def test_apply_fork_needs_the_first_seq() -> None:
    with pytest.raises(GapInThread, match="expected the event at seq 1, found seq 2"):
        apply_fork(
            ThreadState(thread_id="src"),
            rec(2, ThreadForked(source_thread_id="src", source_seq=0)),
        )


@pytest.mark.parametrize(
    ("seq", "payload"),
    [
        (2, ThreadForked(source_thread_id="src", source_seq=1)),
        (1, ThreadForked(source_thread_id="t", source_seq=0)),
        (1, ThreadForked(source_thread_id="src", source_seq=-1)),
    ],
)
def test_a_fork_after_the_start_of_itself_or_before_the_start_changes_nothing(
    seq: int, payload: ThreadForked
) -> None:
    start = fold_all(thread(text_message("a"))) if seq == 2 else ThreadState(thread_id="t")
    event = rec(seq, payload)
    assert needs(start, event) is None
    state = fold_all([event], start)
    assert state == dataclasses.replace(start, version=seq, updated_at=at(seq), high_time=at(seq))


# --- laws --------------------------------------------------------------------------------

SOURCE = thread(text_message("s1"), put("k", "s"), put("count", 2, "counter"), name="src")
TASKS = ("task-1", "task-2")
KEYS = ("k", "count", "title")
# Payloads with floats stay out of random generation: a snapshot of a state holding an
# infinite float does not decode (JSON has no infinity), see the routing samples instead.
_RANDOM_TYPES = [
    c for n, c in sorted(PAYLOAD_TYPES.items()) if n not in ("routing.Decided", "routing.Escalated")
]
_PARTS = st.lists(st.sampled_from([Part(text="a"), Part(data_json="{}")]), max_size=2).map(tuple)
_KINDS = st.sampled_from(["value", "counter", "set", "map", "list"])
_VALUES = st.sampled_from(["1", "2", "[1]", "[2, 1]", '{"a": 1}', '"x"', "oops"])
_CONTENT: st.SearchStrategy[Payload] = st.one_of(
    st.builds(
        Message,
        message_id=st.sampled_from(["m1", "m2"]),
        role=st.just("user"),
        parts=_PARTS,
        task_id=st.none() | st.sampled_from(TASKS),
        context_id=st.none() | st.just("ctx"),
    ),
    st.builds(
        TaskStatusUpdate,
        task_id=st.sampled_from(TASKS),
        state=st.sampled_from(["working", "completed", "failed"]),
        final=st.booleans(),
    ),
    st.builds(
        Artifact,
        task_id=st.sampled_from(TASKS),
        artifact_id=st.sampled_from(["a1", "a2"]),
        name=st.none() | st.just("n"),
        parts=_PARTS,
        append=st.booleans(),
        last_chunk=st.booleans(),
    ),
    st.builds(MemorySet, key=st.sampled_from(KEYS), value_json=_VALUES, kind=_KINDS),
    st.builds(MemoryDelete, key=st.sampled_from(KEYS)),
    st.builds(
        MemoryResolved,
        key=st.sampled_from(KEYS),
        value_json=st.none() | _VALUES,
        kind=_KINDS,
        superseded_event_ids=st.just(()),
    ),
    st.sampled_from([SAMPLES["routing.Decided"], SAMPLES["routing.Escalated"]]),
)
_RANDOM: st.SearchStrategy[Payload] = st.one_of([records(c) for c in _RANDOM_TYPES])
_VECTORS = st.just({}) | st.dictionaries(
    st.sampled_from("abc"), st.integers(min_value=0, max_value=3)
)


@st.composite
def threads(draw: st.DrawFn, *, follow: bool = True) -> list[RecordedEvent]:
    """Events 1..n of thread ``t``; with ``follow``, rollbacks and forks among them.

    Rollbacks go from before the start to past themselves, forks name the source thread,
    their own thread or one with no events: some make sense, some do not.
    """
    out: list[RecordedEvent] = []
    for seq in range(1, draw(st.integers(min_value=0, max_value=12)) + 1):
        roll = draw(st.sampled_from(range(20)))
        payload: Payload
        if follow and roll < 2:
            payload = ThreadRolledBack(
                to_seq=draw(st.integers(min_value=-1, max_value=seq + 1)), reason="r"
            )
        elif follow and roll < (7 if seq == 1 else 3):
            payload = ThreadForked(
                source_thread_id=draw(st.sampled_from(["src", "t", "empty"])),
                source_seq=draw(st.integers(min_value=-1, max_value=4)),
            )
        elif roll < 6:
            payload = draw(_RANDOM)
            if not follow and isinstance(payload, ThreadRolledBack | ThreadForked):
                payload = text_message("instead")
        else:
            payload = draw(_CONTENT)
        out.append(
            rec(
                seq,
                payload,
                actor=draw(st.sampled_from(["a", "b", "c"])),
                at=draw(st.integers(min_value=0, max_value=20)),
                vector=draw(_VECTORS),
            )
        )
    return out


def _state_at(thread_id: str, seq: int, own: Sequence[RecordedEvent]) -> ThreadState:
    """What a reader hands over for :class:`Needed`: the thread folded up to ``seq``."""
    log = {"t": own, "src": SOURCE}.get(thread_id, [])
    return replay(thread_id, [[e for e in log if e.seq <= seq]])


def replay(thread_id: str, chunks: Sequence[Sequence[RecordedEvent]]) -> ThreadState:
    """Fold chunk after chunk, following rollbacks and forks as a reader does."""
    own = [e for chunk in chunks for e in chunk]
    state = ThreadState(thread_id=thread_id)
    for chunk in chunks:
        remaining = list(chunk)
        while remaining:
            state, used = fold(state, remaining, RULES)
            if used == len(remaining):
                break
            event = remaining[used]
            need = needs(state, event)
            assert need is not None
            target = _state_at(need.thread_id, need.seq, own)
            if need.thread_id == event.thread_id:
                state = apply_rollback(state, target, event)
            else:
                state = apply_fork(target, event)
            remaining = remaining[used + 1 :]
    return state


@st.composite
def chunked(draw: st.DrawFn, events: list[RecordedEvent]) -> list[list[RecordedEvent]]:
    """``events`` cut into chunks; a chunk may repeat some events before it (redelivery)."""
    cuts = sorted(draw(st.sets(st.integers(min_value=0, max_value=len(events)), max_size=4)))
    bounds = [0, *cuts, len(events)]
    out = []
    for start, end in itertools.pairwise(bounds):
        back = draw(st.integers(min_value=0, max_value=start))
        out.append(events[start - back : end])
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_folding_in_chunks_is_folding_in_one_go(data: st.DataObject) -> None:
    events = data.draw(threads(follow=False), label="events")
    cut = data.draw(st.integers(min_value=0, max_value=len(events)), label="cut")
    start = ThreadState(thread_id="t")
    whole, used = fold(start, events, RULES)
    assert used == len(events)
    first, used_first = fold(start, events[:cut], RULES)
    second, used_second = fold(first, events[cut:], RULES)
    assert (used_first, used_second) == (cut, len(events) - cut)
    assert second == whole
    assert whole.version == len(events)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_folding_in_chunks_with_redelivery_rollbacks_and_forks_is_folding_in_one_go(
    data: st.DataObject,
) -> None:
    events = data.draw(threads(), label="events")
    whole = replay("t", [events])
    assert replay("t", data.draw(chunked(events), label="chunks")) == whole
    assert whole.version == len(events)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_snapshot_decodes_to_the_state_it_encodes(data: st.DataObject) -> None:
    events = data.draw(threads(), label="events")
    state = replay("t", [events])
    assert decode(encode(state, RULES.digest)) == state
