"""How the CLI shows events and schemas to people (tables) and machines (JSON lines)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from eventstore import RecordedEvent
from eventstore.jsonview import event_to_json
from eventstore.payloads import (
    Artifact,
    CommandReceived,
    CommandRejected,
    LlmCompleted,
    MemoryConflict,
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
)

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def clip(text: str, width: int = 90) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _parts(parts: Iterable[Part]) -> str:
    shown = []
    for part in parts:
        if part.text is not None:
            shown.append(part.text)
        elif part.data_json is not None:
            shown.append(f"data {part.data_json}")
        elif part.file is not None:
            shown.append(f"file {part.file.name or part.file.uri or '(inline)'}")
    return " | ".join(shown)


def summary(payload: Payload) -> str:
    """A one-line, human description of a payload."""
    match payload:
        case Message():
            return f"[{payload.role}] {_parts(payload.parts)}"
        case TaskStatusUpdate():
            note = f": {_parts(payload.message.parts)}" if payload.message else ""
            return f"task {payload.task_id} -> {payload.state}{note}"
        case Artifact():
            return (
                f"task {payload.task_id} artifact {payload.name or payload.artifact_id}: "
                + _parts(payload.parts)
            )
        case MemorySet():
            kind = "" if payload.kind == "value" else f" ({payload.kind})"
            return f"{payload.key} = {payload.value_json}{kind}"
        case MemoryDelete():
            return f"{payload.key} deleted"
        case MemoryMerged():
            return f"{payload.key} = {payload.value_json} (merged by {payload.policy})"
        case MemoryConflict():
            values = ", ".join(f"{s.actor}: {s.value_json}" for s in payload.siblings)
            return f"{payload.key} conflict: {values}"
        case MemoryResolved():
            return f"{payload.key} resolved = {payload.value_json}"
        case CommandReceived():
            return f"command {payload.name} from {payload.source}: {payload.args_json}"
        case CommandRejected():
            return f"command {payload.command_id} rejected ({payload.code}): {payload.reason}"
        case RoutingDecided():
            return (
                f"task {payload.task_id} -> {payload.choice_kind} {payload.choice} "
                f"(confidence {payload.confidence:.2f}): {payload.rationale}"
            )
        case RoutingEscalated():
            return (
                f"task {payload.task_id} escalated "
                f"(confidence {payload.confidence:.2f}): {payload.reason}"
            )
        case RoutingFeedback():
            verdict = "correct" if payload.correct else f"wrong, better: {payload.better_choice}"
            return f"decision {payload.decision_event_id}: {verdict}"
        case LlmCompleted():
            return f"{payload.model} ({payload.purpose}) in {payload.latency_ms:.0f} ms"
        case ThreadRolledBack():
            return f"rolled back to seq {payload.to_seq}: {payload.reason}"
        case ThreadForked():
            return f"forked from {payload.source_thread_id} at seq {payload.source_seq}"
    return payload.TYPE


def timestamp(event: RecordedEvent) -> str:
    """Event time as ``YYYY-MM-DD HH:MM:SS.mmm`` UTC."""
    return event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def event_table(events: list[RecordedEvent], title: str | None = None) -> Table:
    """Events as a table: seq, time, type, actor, what happened.

    Times show the clock only when every event falls on one day (the day goes in the
    title); on a terminal narrower than 100 columns the time is left out, so the text
    column keeps room (``--json`` always has everything).
    """
    days = {e.occurred_at.date() for e in events}
    one_day = len(days) == 1
    show_time = out.width >= 100
    if one_day and title and show_time:
        title = f"{title} · {next(iter(days)).isoformat()} UTC"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    table.add_column("seq", justify="right", style="bold")
    if show_time:
        table.add_column("time" if one_day else "time (UTC)", no_wrap=True)
    table.add_column("type", no_wrap=True, style="cyan")
    table.add_column("actor", no_wrap=True, style="green")
    table.add_column("what happened", overflow="fold", min_width=24, ratio=1)
    for event in events:
        moment = timestamp(event)
        # Text cells: event content is data, never rich markup ("[user] hi" stays as is).
        cells = [Text(str(event.seq))]
        if show_time:
            cells.append(Text(moment[11:] if one_day else moment))
        cells += [Text(event.type), Text(event.actor), Text(clip(summary(event.payload), 300))]
        table.add_row(*cells)
    return table


def event_line(event: RecordedEvent) -> str:
    """One event on one line, for streams (``events tail``)."""
    return (
        f"{event.position:>8}  {timestamp(event)}  {event.thread_id}#{event.seq}  "
        f"{event.type}  {event.actor}: {clip(summary(event.payload))}"
    )


def print_json(value: Any) -> None:
    """Write one JSON document on one line to stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def print_event_json(event: RecordedEvent) -> None:
    """Write one event as one JSON object on one line."""
    print_json(event_to_json(event))
