"""``agentlog events``: append, read and follow events."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from rich.table import Table
from rich.text import Text

from eventstore import InvalidEvent, RecordedEvent, new_event
from eventstore.jsonview import payload_from_json
from eventstore.payloads import PAYLOAD_TYPES
from ops.cli._context import CliContext, all_threads, fail, run
from ops.cli._render import err, event_line, event_table, out, print_event_json, print_json

_TYPES = ", ".join(PAYLOAD_TYPES)


@click.group()
def events() -> None:
    """Append, read and follow events in the log."""


def _read_data(data: str) -> str:
    if data == "-":
        return sys.stdin.read()
    if data.startswith("@"):
        try:
            with open(data[1:], encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            fail(f"--data {data}: cannot read file: {exc.strerror}")
    return data


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-11-23T10:15:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@events.command(
    epilog=f"""\b
Examples:
  agentlog events append t-42 --type memory.Set \\
      --data '{{"key": "plan", "value_json": "\\"draft\\""}}'
  agentlog events append t-42 --type a2a.Message --actor planner \\
      --data '{{"message_id": "m1", "role": "agent", "parts": [{{"text": "Hello"}}]}}'
  agentlog events append t-42 --type memory.Delete --data @payload.json --expected-version 2

\b
Event types: {_TYPES}.
See a type's fields with: agentlog schemas show TYPE
"""
)
@click.argument("thread")
@click.option(
    "--type", "event_type", required=True, metavar="TYPE", help="Event type, e.g. memory.Set."
)
@click.option(
    "--data",
    required=True,
    metavar="JSON",
    help="The payload record as a JSON object; @FILE reads it from a file, - from stdin. "
    "Optional fields may be left out; give a union value as the plain value.",
)
@click.option("--actor", default="cli", show_default=True, help="Who produces the event.")
@click.option("--tenant", default="default", show_default=True, help="Tenant of the thread.")
@click.option(
    "--expected-version",
    type=click.IntRange(min=0),
    metavar="N",
    help="Append only if the thread's version (seq of its last event; 0 = new thread) is N.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the appended event as one JSON object."
)
@click.pass_obj
def append(
    ctx: CliContext,
    thread: str,
    event_type: str,
    data: str,
    actor: str,
    tenant: str,
    expected_version: int | None,
    as_json: bool,
) -> None:
    """Append one event to THREAD.

    The payload is validated against the type's Avro schema; a missing, unknown or
    mistyped field is refused with a message naming it. With --expected-version the
    append fails (naming the current version) if another writer got there first.
    """
    try:
        payload = payload_from_json(event_type, _read_data(data))
    except InvalidEvent as exc:
        fail(str(exc))

    async def body() -> RecordedEvent:
        async with ctx.log() as log:
            result = await log.append(
                thread, [new_event(payload, actor=actor, tenant=tenant)], expected_version
            )
            (event,) = await log.read_thread(thread, result.first_seq, result.first_seq)
            return event

    event = run(body)
    if as_json:
        print_event_json(event)
    else:
        out.print(
            f"appended {event.type} to thread {thread!r} as seq {event.seq} "
            f"(position {event.position}, event {event.event_id})",
            markup=False,
        )


@events.command(
    epilog="""\b
Examples:
  agentlog events cat t-42
  agentlog events cat t-42 --from-seq 10 --to-seq 20
  agentlog events cat t-42 --until 2026-11-23T10:15:00Z
  agentlog events cat t-42 --json | jq .payload
"""
)
@click.argument("thread")
@click.option("--from-seq", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--to-seq", type=click.IntRange(min=1), help="Last seq to show.")
@click.option("--until", metavar="TIME", help="Show the thread as of this ISO 8601 time.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event per line.")
@click.pass_obj
def cat(
    ctx: CliContext,
    thread: str,
    from_seq: int,
    to_seq: int | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Print THREAD's events in seq order."""
    moment = _parse_time(until) if until else None

    async def body() -> list[RecordedEvent]:
        async with ctx.log(writes=False) as log:
            return await log.read_thread(thread, from_seq, to_seq, until=moment)

    found = run(body)
    if as_json:
        for event in found:
            print_event_json(event)
        return
    if not found:
        err.print(f"thread {thread!r} has no events in that range")
        return
    out.print(event_table(found, title=f"thread {thread} ({len(found)} events)"))


@events.command(
    epilog="""\b
Examples:
  agentlog events tail                    follow new events from now on (Ctrl-C stops)
  agentlog events tail --from-position 1  everything from the start, then follow
  agentlog events tail --thread t-42 --json
"""
)
@click.option(
    "--from-position",
    type=click.IntRange(min=0),
    metavar="N",
    help="Start at log position N (default: only events appended from now on).",
)
@click.option("--thread", metavar="THREAD", help="Only this thread's events.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Stop after N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event per line.")
@click.pass_obj
def tail(
    ctx: CliContext, from_position: int | None, thread: str | None, limit: int | None, as_json: bool
) -> None:
    """Follow the log: print events as they are appended, by any process."""

    async def body() -> None:
        shown = 0
        async with ctx.log(writes=False) as log:
            start = from_position if from_position is not None else await log.head() + 1
            async for event in log.subscribe(start):
                if thread is not None and event.thread_id != thread:
                    continue
                if as_json:
                    print_event_json(event)
                else:
                    out.print(event_line(event), markup=False)
                sys.stdout.flush()
                shown += 1
                if limit is not None and shown >= limit:
                    return

    try:
        run(body)
    except KeyboardInterrupt:
        pass


@events.command(name="threads")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per thread per line.")
@click.pass_obj
def threads_(ctx: CliContext, as_json: bool) -> None:
    """List the threads in the log with their versions."""

    async def body() -> list[tuple[str, str, int, int]]:
        async with ctx.log(writes=False) as log:
            return [
                (t.thread_id, t.tenant, t.version, t.first_position) for t in await all_threads(log)
            ]

    rows = run(body)
    if as_json:
        for thread_id, tenant, version, first in rows:
            print_json(
                {
                    "thread_id": thread_id,
                    "tenant": tenant,
                    "version": version,
                    "first_position": first,
                }
            )
        return
    table = Table(title=f"{len(rows)} threads", title_justify="left")
    table.add_column("thread")
    table.add_column("tenant")
    table.add_column("version", justify="right")
    table.add_column("first position", justify="right")
    for thread_id, tenant, version, first in rows:
        table.add_row(Text(thread_id), Text(tenant), str(version), str(first))
    out.print(table)
