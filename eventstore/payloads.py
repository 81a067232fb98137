"""Typed payloads: one frozen dataclass per event type, mirroring the ``.avsc`` files.

The ``.avsc`` files under ``eventstore/schemas`` are the contract; these classes are the
Python view of them and a test checks that every class matches its record field by field.
Each payload class names its event type in ``TYPE`` (``"a2a.Message"``); its Avro record is
``agentlog.<TYPE>``. JSON-valued fields (``*_json``) hold a JSON document as text, because
Avro has no "any" type.

Values are immutable: arrays are tuples, maps are plain dicts that must not be mutated.
Conversion to and from the plain values fastavro reads and writes is compiled once per
class (see :func:`to_avro` and :func:`from_avro`); it does no I/O.
"""

from __future__ import annotations

import builtins
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict

Role = Literal["user", "agent"]
TaskState = Literal[
    "submitted",
    "working",
    "input_required",
    "completed",
    "canceled",
    "failed",
    "rejected",
    "auth_required",
    "unknown",
]
ValueKind = Literal["value", "counter", "set", "map", "list"]
PrimitiveKind = Literal["agent", "workflow", "tool"]

_NS = "agentlog."


class Record:
    """Base of every Avro-record dataclass (payloads and the records nested in them)."""

    __slots__ = ()
    AVRO_NAME: ClassVar[str]
    # Where payloads are validated from JSON (CLI, REST): unknown fields are errors, bytes
    # travel as base64, and non-finite floats as strings (they read back as floats).
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        extra="forbid",
        ser_json_bytes="base64",
        val_json_bytes="base64",
        ser_json_inf_nan="strings",  # JSON has no infinity: "Infinity", "-Infinity", "NaN"
    )


class Payload(Record):
    """Base of the event payloads; ``TYPE`` is the event type the payload makes."""

    __slots__ = ()
    TYPE: ClassVar[str]


# --- records nested in payloads ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FileRef(Record):
    """A file carried by an A2A part, by URI or as inline bytes."""

    AVRO_NAME: ClassVar[str] = "agentlog.a2a.FileRef"
    name: str | None = None
    media_type: str | None = None
    uri: str | None = None
    bytes: builtins.bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Part(Record):
    """One part of an A2A message or artifact: text, data (JSON text) or a file."""

    AVRO_NAME: ClassVar[str] = "agentlog.a2a.Part"
    text: str | None = None
    data_json: str | None = None
    file: FileRef | None = None
    media_type: str | None = None
    metadata_json: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Sibling(Record):
    """One concurrent version of a memory key (``value_json`` None means a delete)."""

    AVRO_NAME: ClassVar[str] = "agentlog.memory.Sibling"
    event_id: str
    actor: str
    value_json: str | None = None
    kind: ValueKind = "value"
    version_vector: Mapping[str, int]
    occurred_at: datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Candidate(Record):
    """A primitive the router considered, with its score."""

    AVRO_NAME: ClassVar[str] = "agentlog.routing.Candidate"
    name: str
    kind: PrimitiveKind
    score: float
    reason: str | None = None


# --- payloads ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message(Payload):
    """``a2a.Message``: an A2A message sent by a user or an agent."""

    TYPE: ClassVar[str] = "a2a.Message"
    AVRO_NAME: ClassVar[str] = "agentlog.a2a.Message"
    message_id: str
    role: Role
    parts: tuple[Part, ...]
    task_id: str | None = None
    context_id: str | None = None
    reference_task_ids: tuple[str, ...] = ()
    metadata_json: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskStatusUpdate(Payload):
    """``a2a.TaskStatusUpdate``: an A2A task changed state."""

    TYPE: ClassVar[str] = "a2a.TaskStatusUpdate"
    AVRO_NAME: ClassVar[str] = "agentlog.a2a.TaskStatusUpdate"
    task_id: str
    context_id: str | None = None
    state: TaskState
    message: Message | None = None
    final: bool = False
    metadata_json: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Artifact(Payload):
    """``a2a.Artifact``: an A2A task produced an artifact, or a chunk of one."""

    TYPE: ClassVar[str] = "a2a.Artifact"
    AVRO_NAME: ClassVar[str] = "agentlog.a2a.Artifact"
    task_id: str
    artifact_id: str
    context_id: str | None = None
    name: str | None = None
    description: str | None = None
    parts: tuple[Part, ...]
    append: bool = False
    last_chunk: bool = True
    metadata_json: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemorySet(Payload):
    """``memory.Set``: a memory key was written (causal context: the envelope's vector)."""

    TYPE: ClassVar[str] = "memory.Set"
    AVRO_NAME: ClassVar[str] = "agentlog.memory.Set"
    key: str
    value_json: str
    kind: ValueKind = "value"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemoryDelete(Payload):
    """``memory.Delete``: a memory key was deleted."""

    TYPE: ClassVar[str] = "memory.Delete"
    AVRO_NAME: ClassVar[str] = "agentlog.memory.Delete"
    key: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemoryMerged(Payload):
    """``memory.Merged``: concurrent writes to a key were merged by its merge policy."""

    TYPE: ClassVar[str] = "memory.Merged"
    AVRO_NAME: ClassVar[str] = "agentlog.memory.Merged"
    key: str
    value_json: str | None = None
    kind: ValueKind = "value"
    policy: str
    merged_event_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemoryConflict(Payload):
    """``memory.Conflict``: concurrent writes under the ``manual`` policy; siblings kept."""

    TYPE: ClassVar[str] = "memory.Conflict"
    AVRO_NAME: ClassVar[str] = "agentlog.memory.Conflict"
    key: str
    siblings: tuple[Sibling, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemoryResolved(Payload):
    """``memory.Resolved``: a manual conflict was settled."""

    TYPE: ClassVar[str] = "memory.Resolved"
    AVRO_NAME: ClassVar[str] = "agentlog.memory.Resolved"
    key: str
    value_json: str | None = None
    kind: ValueKind = "value"
    chosen_event_id: str | None = None
    superseded_event_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandReceived(Payload):
    """``command.Received``: an external request was accepted as a command."""

    TYPE: ClassVar[str] = "command.Received"
    AVRO_NAME: ClassVar[str] = "agentlog.command.Received"
    command_id: str
    name: str
    args_json: str
    source: str
    expected_version: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected(Payload):
    """``command.Rejected``: a command was refused; ``code`` and ``reason`` say why."""

    TYPE: ClassVar[str] = "command.Rejected"
    AVRO_NAME: ClassVar[str] = "agentlog.command.Rejected"
    command_id: str
    code: str
    reason: str
    expected_version: int | None = None
    current_version: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RoutingDecided(Payload):
    """``routing.Decided``: the router chose a primitive for a task, and why."""

    TYPE: ClassVar[str] = "routing.Decided"
    AVRO_NAME: ClassVar[str] = "agentlog.routing.Decided"
    task_id: str
    candidates: tuple[Candidate, ...]
    choice: str
    choice_kind: PrimitiveKind
    confidence: float
    rationale: str
    router: str
    model: str | None = None
    latency_ms: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RoutingEscalated(Payload):
    """``routing.Escalated``: confidence was below the threshold; a human decides."""

    TYPE: ClassVar[str] = "routing.Escalated"
    AVRO_NAME: ClassVar[str] = "agentlog.routing.Escalated"
    task_id: str
    reason: str
    confidence: float
    threshold: float
    candidates: tuple[Candidate, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RoutingFeedback(Payload):
    """``routing.Feedback``: someone judged a routing decision."""

    TYPE: ClassVar[str] = "routing.Feedback"
    AVRO_NAME: ClassVar[str] = "agentlog.routing.Feedback"
    task_id: str
    decision_event_id: str
    correct: bool
    better_choice: str | None = None
    comment: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LlmCompleted(Payload):
    """``llm.Completed``: a model call completed; replays read it instead of calling."""

    TYPE: ClassVar[str] = "llm.Completed"
    AVRO_NAME: ClassVar[str] = "agentlog.llm.Completed"
    request_id: str
    model: str
    purpose: str
    request_json: str
    response_json: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ThreadRolledBack(Payload):
    """``thread.RolledBack``: live state reset to its state at ``to_seq``; history kept."""

    TYPE: ClassVar[str] = "thread.RolledBack"
    AVRO_NAME: ClassVar[str] = "agentlog.thread.RolledBack"
    to_seq: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ThreadForked(Payload):
    """``thread.Forked``: this thread starts as a copy of another up to ``source_seq``."""

    TYPE: ClassVar[str] = "thread.Forked"
    AVRO_NAME: ClassVar[str] = "agentlog.thread.Forked"
    source_thread_id: str
    source_seq: int
    reason: str | None = None


PAYLOAD_TYPES: Mapping[str, type[Payload]] = types.MappingProxyType(
    {
        cls.TYPE: cls
        for cls in (
            Message,
            TaskStatusUpdate,
            Artifact,
            MemorySet,
            MemoryDelete,
            MemoryMerged,
            MemoryConflict,
            MemoryResolved,
            CommandReceived,
            CommandRejected,
            RoutingDecided,
            RoutingEscalated,
            RoutingFeedback,
            LlmCompleted,
            ThreadRolledBack,
            ThreadForked,
        )
    }
)
"""Every event type, mapped to its payload class, in the order of the envelope's union."""

_BY_AVRO_NAME: Mapping[str, type[Payload]] = {c.AVRO_NAME: c for c in PAYLOAD_TYPES.values()}


# --- conversion to and from fastavro's plain values --------------------------------------

# Plain values are what fastavro writes and reads: dicts for records, lists for arrays.
_Conv = Callable[[Any], Any]  # Any: fastavro's values are untyped JSON-like trees


def _record_class(tp: Any) -> type[Record] | None:
    return tp if isinstance(tp, type) and issubclass(tp, Record) else None


def _field_converters(cls: type[Record]) -> list[tuple[str, _Conv | None, _Conv | None]]:
    """For each field: (name, to-plain, from-plain); None where the value passes as is."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, _Conv | None, _Conv | None]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # every Record is a dataclass
        tp = hints[f.name]
        args = typing.get_args(tp)
        origin = typing.get_origin(tp)
        inner = [a for a in args if a is not type(None)]
        rec = _record_class(tp) or (_record_class(inner[0]) if len(inner) == 1 else None)
        if origin is tuple and _record_class(args[0]):
            out.append((f.name, *_array_converters(typing.cast(type[Record], args[0]))))
        elif origin is tuple:
            out.append((f.name, list, tuple))
        elif rec is not None:
            out.append((f.name, *_optional_converters(rec)))
        else:
            out.append((f.name, None, None))
    return out


def _array_converters(item: type[Record]) -> tuple[_Conv, _Conv]:
    def to_plain(v: Any) -> Any:
        return [_to_plain(item, x) for x in v]

    def from_plain(v: Any) -> Any:
        return tuple([_from_plain(item, x) for x in v])

    return to_plain, from_plain


def _optional_converters(rec: type[Record]) -> tuple[_Conv, _Conv]:
    def to_plain(v: Any) -> Any:
        return None if v is None else _to_plain(rec, v)

    def from_plain(v: Any) -> Any:
        return None if v is None else _from_plain(rec, v)

    return to_plain, from_plain


_TO: dict[type[Record], Callable[[Record], dict[str, Any]]] = {}
_FROM: dict[type[Record], Callable[[dict[str, Any]], Record]] = {}


def _compile(cls: type[Record]) -> None:
    convs = _field_converters(cls)
    names = [n for n, _, _ in convs]
    to_convs = [(n, c) for n, c, _ in convs if c is not None]
    getters = [(n, getattr(cls, n)) for n in names]  # slot descriptors: fast attribute reads

    def to_plain(obj: Record) -> dict[str, Any]:
        d = {n: g.__get__(obj) for n, g in getters}
        for n, c in to_convs:
            d[n] = c(d[n])
        return d

    # Values read by fastavro already match the schema, so objects are filled slot by slot
    # (about twice as fast as the frozen dataclass __init__); a missing field is KeyError.
    setters = [(n, getattr(cls, n).__set__, c) for n, _, c in convs]
    new = object.__new__

    def from_plain(d: dict[str, Any]) -> Record:
        obj = new(cls)
        for n, set_, c in setters:
            set_(obj, d[n] if c is None else c(d[n]))
        return obj

    _TO[cls] = to_plain
    _FROM[cls] = from_plain


def _to_plain(cls: type[Record], obj: Record) -> dict[str, Any]:
    return _TO[cls](obj)


def _from_plain(cls: type[Record], d: dict[str, Any]) -> Record:
    return _FROM[cls](d)


_RECORDS: tuple[type[Record], ...] = (FileRef, Part, Sibling, Candidate, *PAYLOAD_TYPES.values())
RECORD_TYPES: Mapping[str, type[Record]] = types.MappingProxyType(
    {c.AVRO_NAME: c for c in _RECORDS}
)
"""Avro record full name -> Python class, for every record: payloads and those inside them."""

for _cls in RECORD_TYPES.values():
    _compile(_cls)


def to_avro(payload: Payload) -> tuple[str, dict[str, Any]]:
    """Return the payload as fastavro's union value: ``(record full name, plain dict)``.

    Args:
        payload: Any payload instance.

    Returns:
        The Avro record full name and the record as plain values.
    """
    cls = type(payload)
    return cls.AVRO_NAME, _TO[cls](payload)


def from_avro(avro_name: str, value: dict[str, Any]) -> Payload:
    """Build the payload of record ``avro_name`` from the plain values fastavro read.

    Args:
        avro_name: Full Avro record name, e.g. ``"agentlog.memory.Set"``.
        value: The record as read by fastavro.

    Returns:
        The typed payload.

    Raises:
        KeyError: ``avro_name`` is not a payload record.
    """
    cls = _BY_AVRO_NAME[avro_name]
    return typing.cast(Payload, _FROM[cls](value))


def payload_class(event_type: str) -> type[Payload]:
    """Return the payload class of ``event_type`` (``"memory.Set"``).

    Raises:
        KeyError: no such event type; the message lists the known ones.
    """
    try:
        return PAYLOAD_TYPES[event_type]
    except KeyError:
        known = ", ".join(PAYLOAD_TYPES)
        raise KeyError(f"unknown event type {event_type!r}; known types: {known}") from None
