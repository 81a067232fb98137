"""Sample payloads and events used across the tests, plus hypothesis strategies for them."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from eventstore import NewEvent, new_event
from eventstore.payloads import (
    PAYLOAD_TYPES,
    Artifact,
    Candidate,
    CommandReceived,
    CommandRejected,
    FileRef,
    LlmCompleted,
    MemoryConflict,
    MemoryDelete,
    MemoryMerged,
    MemoryResolved,
    MemorySet,
    Message,
    Part,
    Payload,
    Record,
    RoutingDecided,
    RoutingEscalated,
    RoutingFeedback,
    Sibling,
    TaskStatusUpdate,
    ThreadForked,
    ThreadRolledBack,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def text_message(text: str = "hello", role: str = "user") -> Message:
    return Message(message_id=f"m-{text[:8]}", role=role, parts=(Part(text=text),))  # type: ignore[arg-type]


SAMPLES: dict[str, Payload] = {
    p.TYPE: p
    for p in (
        Message(
            message_id="m1",
            role="agent",
            parts=(
                Part(text="Here is the plan"),
                Part(data_json='{"steps": 3}', media_type="application/json"),
                Part(file=FileRef(name="notes.txt", bytes=b"\x00\x01raw", media_type="text/plain")),
            ),
            task_id="task-1",
            context_id="ctx-1",
            reference_task_ids=("task-0",),
            metadata_json='{"lang": "en"}',
        ),
        TaskStatusUpdate(
            task_id="task-1", state="input_required", message=text_message("need input", "agent")
        ),
        Artifact(
            task_id="task-1",
            artifact_id="art-1",
            name="report.md",
            parts=(Part(text="# Report"),),
            append=True,
            last_chunk=False,
        ),
        MemorySet(key="plan", value_json='["a", "b"]', kind="list"),
        MemoryDelete(key="scratch"),
        MemoryMerged(
            key="count",
            value_json="5",
            kind="counter",
            policy="merge",
            merged_event_ids=("e1", "e2"),
        ),
        MemoryConflict(
            key="title",
            siblings=(
                Sibling(
                    event_id="e1",
                    actor="planner",
                    value_json='"A"',
                    version_vector={"planner": 2},
                    occurred_at=T0,
                ),
                Sibling(
                    event_id="e2",
                    actor="critic",
                    value_json=None,
                    version_vector={"critic": 1},
                    occurred_at=T0,
                ),
            ),
        ),
        MemoryResolved(
            key="title", value_json='"A"', chosen_event_id="e1", superseded_event_ids=("e2",)
        ),
        CommandReceived(
            command_id="c1", name="append", args_json="{}", source="rest", expected_version=4
        ),
        CommandRejected(
            command_id="c1",
            code="wrong_expected_version",
            reason="stale",
            expected_version=4,
            current_version=6,
        ),
        RoutingDecided(
            task_id="task-1",
            candidates=(
                Candidate(name="researcher", kind="agent", score=0.91, reason="mentions papers"),
                Candidate(name="search", kind="tool", score=0.4),
            ),
            choice="researcher",
            choice_kind="agent",
            confidence=0.91,
            rationale="best description match",
            router="lexical",
            latency_ms=0.8,
        ),
        RoutingEscalated(
            task_id="task-2", reason="low confidence", confidence=0.41, threshold=0.7, candidates=()
        ),
        RoutingFeedback(
            task_id="task-1",
            decision_event_id="e9",
            correct=False,
            better_choice="search",
            comment="was a lookup",
        ),
        LlmCompleted(
            request_id="r1",
            model="small",
            purpose="routing",
            request_json="{}",
            response_json="{}",
            prompt_tokens=12,
            latency_ms=35.5,
        ),
        ThreadRolledBack(to_seq=3, reason="bad tool output"),
        ThreadForked(source_thread_id="t-1", source_seq=7, reason="what-if"),
    )
}
assert set(SAMPLES) == set(PAYLOAD_TYPES)


def event(payload: Payload | None = None, *, actor: str = "planner", **kw: Any) -> NewEvent:
    """A new event with a fresh id (payload default: a small memory.Set)."""
    return new_event(payload or MemorySet(key="k", value_json="1"), actor=actor, **kw)


# --- hypothesis strategies ---------------------------------------------------------------

_LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TEXT = st.text(max_size=40)
# timestamp-millis: whole milliseconds, UTC
_TIMES = st.integers(min_value=-(10**12), max_value=4 * 10**12).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
)


def _for_type(tp: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str:
        return _TEXT
    if tp is int:
        return _LONG
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is bool:
        return st.booleans()
    if tp is bytes:
        return st.binary(max_size=40)
    if tp is datetime:
        return _TIMES
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in args if a is not type(None)]
        return st.none() | _for_type(inner[0])
    if origin is tuple:
        return st.lists(_for_type(args[0]), max_size=3).map(tuple)
    if origin in (Mapping, dict) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return st.dictionaries(_TEXT, _LONG, max_size=3)
    if isinstance(tp, type) and issubclass(tp, Record):
        return records(tp)
    raise TypeError(f"no strategy for {tp!r}")


def records(cls: type[Record]) -> st.SearchStrategy[Any]:
    """Random instances of a payload or nested record class."""
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls,
        **{
            f.name: st.deferred(lambda t=hints[f.name]: _for_type(t))
            for f in dataclasses.fields(cls)
        },
    )


payloads: st.SearchStrategy[Payload] = st.one_of([records(c) for c in PAYLOAD_TYPES.values()])
"""Random payloads of every event type."""

new_events: st.SearchStrategy[NewEvent] = st.builds(
    NewEvent,
    payload=payloads,
    event_id=st.text(min_size=1, max_size=40),
    occurred_at=_TIMES,
    actor=st.text(min_size=1, max_size=20),
    tenant=_TEXT,
    version_vector=st.dictionaries(_TEXT, _LONG, max_size=3),
    causation_id=st.none() | _TEXT,
    correlation_id=st.none() | _TEXT,
    idempotency_key=st.none() | _TEXT,
)
"""Random new events."""
