"""How the CLI shows thread state, history with its timeline, conflicts and verify results."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from eventstore import RecordedEvent
from eventstore.payloads import ThreadForked, ThreadRolledBack
from ops.cli._render import clip, out, summary, timestamp
from projections import KeyState, ThreadState, VerifyResult


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False)


def key_value(key: KeyState) -> str:
    """A memory key's value as one line (siblings listed when in conflict)."""
    if key.conflicted:
        values = " | ".join(f"{s.actor}: {s.value_json or '(deleted)'}" for s in key.siblings)
        return f"CONFLICT {values}"
    if key.value_json is None:
        return "(deleted)"
    return key.value_json


def _writers(key: KeyState) -> str:
    return ", ".join(f"{s.actor}@{s.seq}" for s in key.siblings)


def state_view(state: ThreadState, *, point: str | None = None, messages: int = 10) -> Group:
    """A thread state as a header line and tables (memory, tasks, conversation, routing)."""
    parts: list[RenderableType] = []
    when = f" · updated {state.updated_at:%Y-%m-%d %H:%M:%S} UTC" if state.updated_at else ""
    at = f" as of {point}" if point else ""
    head = (
        f"thread [bold]{state.thread_id}[/]{at} · version {state.version}{when} · "
        f"{len(state.conversation)} messages · {len(state.values())} memory keys · "
        f"{len(state.tasks)} tasks"
    )
    parts.append(Text.from_markup(head))
    lineage = state.lineage
    if lineage.forked_from is not None:
        f = lineage.forked_from
        parts.append(Text(f"forked from {f.source_thread_id} at seq {f.source_seq}"))
    for r in lineage.rollbacks:
        parts.append(Text(f"rolled back at seq {r.seq} to seq {r.to_seq} by {r.actor}: {r.reason}"))
    conflicts = state.conflicts()
    if conflicts:
        parts.append(
            Text(
                f"{len(conflicts)} memory key(s) in conflict: "
                + ", ".join(k.key for k in conflicts)
                + " (agentlog resolve THREAD KEY --choose EVENT_ID | --value JSON)",
                style="bold red",
            )
        )
    if state.memory:
        table = _table("memory")
        for name in ("key", "value", "kind", "policy", "written by (actor@seq)"):
            table.add_column(name, overflow="fold")
        for name in sorted(state.memory):
            key = state.memory[name]
            style = "red" if key.conflicted else ("dim" if key.value_json is None else "")
            table.add_row(
                Text(name),
                Text(clip(key_value(key), 80), style=style),
                Text(key.kind),
                Text(key.policy),
                Text(_writers(key)),
            )
        parts.append(table)
    if state.tasks:
        table = _table("tasks")
        for name in ("task", "state", "updates", "artifacts", "last seq"):
            table.add_column(name, overflow="fold")
        for task in sorted(state.tasks.values(), key=lambda t: t.created_seq):
            final = " (final)" if task.final else ""
            table.add_row(
                Text(task.task_id),
                Text(task.state + final),
                Text(str(len(task.history))),
                Text(", ".join(a.name or a.artifact_id for a in task.artifacts)),
                Text(str(task.updated_seq)),
            )
        parts.append(table)
    if state.conversation:
        shown = state.conversation[-messages:]
        title = "conversation" + (
            f" (last {len(shown)} of {len(state.conversation)})"
            if len(shown) < len(state.conversation)
            else ""
        )
        table = _table(title)
        table.add_column("seq", justify="right")
        table.add_column("actor", style="green")
        table.add_column("message", overflow="fold", min_width=30)
        for entry in shown:
            origin = "" if entry.thread_id == state.thread_id else f"{entry.thread_id}#"
            table.add_row(
                Text(f"{origin}{entry.seq}"),
                Text(entry.actor),
                Text(clip(summary(entry.message), 200)),
            )
        parts.append(table)
    if state.routing:
        table = _table("routing")
        table.add_column("seq", justify="right")
        table.add_column("decision", overflow="fold")
        for record in state.routing:
            table.add_row(Text(str(record.seq)), Text(clip(summary(record.decision), 200)))
        parts.append(table)
    return Group(*parts)


def timeline(events: Sequence[RecordedEvent]) -> dict[int, int | None]:
    """For each seq, which rollback undid it (its seq), or ``None`` if it is live.

    Each event's predecessor on the live timeline is the seq before it, except a rollback
    to T, whose predecessor is T; the live events are the chain from the last event back.
    """
    parent: dict[int, int] = {}
    for event in events:
        payload = event.payload
        if isinstance(payload, ThreadRolledBack) and 0 <= payload.to_seq < event.seq:
            parent[event.seq] = payload.to_seq
        else:
            parent[event.seq] = event.seq - 1
    live: set[int] = set()
    seq = events[-1].seq if events else 0
    while seq > 0:
        live.add(seq)
        seq = parent.get(seq, seq - 1)
    undone_by: dict[int, int | None] = {}
    for event in events:
        undone_by[event.seq] = None if event.seq in live else _undoer(event.seq, events)
    return undone_by


def _undoer(seq: int, events: Sequence[RecordedEvent]) -> int | None:
    for event in events:
        payload = event.payload
        if isinstance(payload, ThreadRolledBack) and payload.to_seq < seq < event.seq:
            return event.seq
    return None


def history_table(events: Sequence[RecordedEvent], thread_id: str) -> Table:
    """A thread's events with the timeline: which are live, which a rollback undid."""
    undone = timeline(events)
    show_time = out.width >= 100
    table = _table(f"history of {thread_id} · {len(events)} events")
    table.add_column("seq", justify="right", style="bold")
    if show_time:
        table.add_column("time (UTC)", no_wrap=True)
    table.add_column("type", no_wrap=True, style="cyan")
    table.add_column("actor", no_wrap=True, style="green")
    table.add_column("live", no_wrap=True)
    table.add_column("what happened", overflow="fold", min_width=24, ratio=1)
    for event in events:
        by = undone[event.seq]
        mark = Text("yes") if by is None else Text(f"undone@{by}", style="dim")
        text = summary(event.payload)
        if isinstance(event.payload, ThreadForked):
            text += " (its history up to there is the source's)"
        cells = [Text(str(event.seq))]
        if show_time:
            cells.append(Text(timestamp(event)))
        cells += [Text(event.type), Text(event.actor), mark, Text(clip(text, 300))]
        table.add_row(*cells, style="dim" if by is not None else None)
    return table


def conflicts_table(rows: Sequence[tuple[str, KeyState]]) -> Table:
    """Unresolved conflicts: thread, key, and each sibling (event id, actor, value)."""
    table = _table(f"{len(rows)} unresolved conflict(s)")
    for name in ("thread", "key", "sibling event id", "actor", "seq", "value"):
        table.add_column(name, overflow="fold")
    for thread_id, key in rows:
        for i, sibling in enumerate(key.siblings):
            table.add_row(
                Text(thread_id if i == 0 else ""),
                Text(key.key if i == 0 else ""),
                Text(sibling.event_id),
                Text(sibling.actor),
                Text(str(sibling.seq)),
                Text(clip(sibling.value_json or "(deleted)", 60)),
            )
    return table


def verify_table(results: Sequence[VerifyResult]) -> Table:
    """Verify results, one row per thread."""
    failed = sum(not r.ok for r in results)
    table = _table(f"verify: {len(results)} thread(s), {failed} failed")
    for name in ("thread", "version", "result", "snapshots", "details"):
        table.add_column(name, overflow="fold")
    for r in results:
        details = "; ".join(r.differences[:3])
        if r.bad_snapshots:
            details = f"bad snapshots at {list(r.bad_snapshots)}" + (
                f"; {details}" if details else ""
            )
        table.add_row(
            Text(r.thread_id),
            Text(str(r.version)),
            Text("pass" if r.ok else "FAIL", style="green" if r.ok else "bold red"),
            Text(str(r.snapshots_checked)),
            Text(details),
        )
    return table
