"""Thread-state commands: state, history, rollback, fork, conflicts, resolve, verify,
rebuild and project."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from eventstore import RecordedEvent
from eventstore.jsonview import event_to_json
from ops.cli._context import CliContext, all_threads, fail, run
from ops.cli._events import _parse_time
from ops.cli._render import err, out, print_json
from ops.cli._state_view import (
    conflicts_table,
    history_table,
    state_view,
    timeline,
    verify_table,
)
from ops.wiring import Projections, open_projections
from projections import (
    KeyState,
    ThreadState,
    VerifyResult,
    last_consistent_seq,
    rebuild,
    verify,
)
from projections.serial import to_json

T = TypeVar("T")

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")


def _run(
    ctx: CliContext,
    body: Callable[[Projections], Awaitable[T]],
    *,
    run_projector: bool = False,
    writes: bool = True,
) -> T:
    """Run ``body`` with the log, store, reader and commands open; ``writes=False`` for a
    command that appends nothing (on Kafka it then never joins the sequencer group)."""

    async def main() -> T:
        async with open_projections(
            ctx.settings, run_projector=run_projector, writes=writes
        ) as kit:
            return await body(kit)

    return run(main)


async def _point(kit: Projections, thread: str, value: str) -> int:
    """A seq from SEQ, an ISO time (the last event at or before it) or an event id."""
    if value.isdigit():
        return int(value)
    if _TIME.match(value):
        state = await kit.reader.state_at(thread, at=_parse_time(value))
        return state.version
    return await kit.reader.seq_of(thread, value)


async def _at(kit: Projections, thread: str, value: str) -> ThreadState:
    if value.isdigit():
        return await kit.reader.state_at(thread, seq=int(value))
    if _TIME.match(value):
        return await kit.reader.state_at(thread, at=_parse_time(value))
    return await kit.reader.state_at(thread, event_id=value)


_ACTOR = click.option("--actor", default="cli", show_default=True, help="Who does it.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


@click.command(
    epilog="""\b
Examples:
  agentlog state t-42                      the live state
  agentlog state t-42 --at 7               as of seq 7
  agentlog state t-42 --at 2026-11-23T10:15:00Z
  agentlog state t-42 --at 0192f0c4-...    as of an event (by id)
  agentlog state t-42 --json               everything, as JSON
"""
)
@click.argument("thread")
@click.option(
    "--at",
    "point",
    metavar="SEQ|TIME|EVENT_ID",
    help="Show the state as of this point instead of now.",
)
@click.option("--messages", default=10, show_default=True, help="Conversation lines to show.")
@_JSON
@click.pass_obj
def state(ctx: CliContext, thread: str, point: str | None, messages: int, as_json: bool) -> None:
    """Show THREAD's state: memory, tasks, conversation, routing and lineage.

    The state is rebuilt from the log (the nearest snapshot plus the events after it);
    with --at it is the state as of a seq, a time (the events that occurred up to then)
    or an event id.
    """

    async def body(kit: Projections) -> ThreadState:
        if point is not None:
            return await _at(kit, thread, point)
        found = await kit.reader.state(thread)
        if found.version == 0:
            fail(f"thread {thread!r} has no events")
        return found

    found = _run(ctx, body, writes=False)
    if as_json:
        print_json(to_json(found))
    else:
        out.print(state_view(found, point=point, messages=messages))


@click.command(
    epilog="""\b
Examples:
  agentlog history t-42
  agentlog history t-42 --json     one event per line, with "live" and "undone_by"
"""
)
@click.argument("thread")
@_JSON
@click.pass_obj
def history(ctx: CliContext, thread: str, as_json: bool) -> None:
    """Show every event of THREAD and whether it is live or a rollback undid it.

    Nothing is ever deleted: a rollback is an event, and the events it undid stay in
    the history (marked undone@SEQ with the rollback's seq).
    """

    async def body(kit: Projections) -> list[RecordedEvent]:
        found = await kit.log.read_thread(thread)
        if not found:
            fail(f"thread {thread!r} has no events")
        return found

    events = _run(ctx, body, writes=False)
    if as_json:
        undone = timeline(events)
        for event in events:
            doc = event_to_json(event)
            doc["live"] = undone[event.seq] is None
            doc["undone_by"] = undone[event.seq]
            print_json(doc)
    else:
        out.print(history_table(events, thread))


@click.command(
    epilog="""\b
Examples:
  agentlog rollback t-42 --to 7 --reason "bad tool output after seq 7"
  agentlog rollback t-42 --to 2026-11-23T10:15:00Z --reason "state before the outage"
  agentlog rollback t-42 --to last-consistent --reason "undo the conflicting writes"
  agentlog rollback t-42 --to 11 --reason "undo the rollback at seq 12"
"""
)
@click.argument("thread")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="SEQ|TIME|EVENT_ID|last-consistent",
    help="The point whose state becomes the live state again.",
)
@click.option("--reason", required=True, help="Why (kept in the history).")
@_ACTOR
@_JSON
@click.pass_obj
def rollback(
    ctx: CliContext, thread: str, target: str, reason: str, actor: str, as_json: bool
) -> None:
    """Roll THREAD's live state back to an earlier point.

    Appends thread.RolledBack: the live state becomes the state at the point, and later
    events apply on top of it. Nothing is deleted, so a rollback can itself be rolled
    back. `last-consistent` picks the latest point where no memory key was in conflict
    and the state from snapshots matched a rebuild from scratch.
    """

    async def body(kit: Projections) -> tuple[ThreadState, ThreadState, int]:
        before = await kit.reader.state(thread)
        if before.version == 0:
            fail(f"thread {thread!r} has no events")
        if target == "last-consistent":
            to_seq = await last_consistent_seq(kit.reader, thread)
        else:
            to_seq = await _point(kit, thread, target)
        result = await kit.commands.rollback(
            thread, to_seq=to_seq, reason=reason, actor=actor, sync="immediate"
        )
        assert result.state is not None
        return before, result.state, to_seq

    before, after, to_seq = _run(ctx, body)
    if as_json:
        print_json({"thread_id": thread, "to_seq": to_seq, "before": to_json(before),
                    "after": to_json(after)})  # fmt: skip
        return
    out.print(f"rolled back thread {thread!r} to seq {to_seq} (rollback is seq {after.version})")
    out.print("\n[bold]before[/]")
    out.print(state_view(before, messages=3))
    out.print("\n[bold]after[/]")
    out.print(state_view(after, messages=3))


@click.command(
    epilog="""\b
Examples:
  agentlog fork t-42 --at 7 --into t-42-retry
  agentlog fork t-42 --at 2026-11-23T10:15:00Z --into t-42-what-if --reason "try another plan"
"""
)
@click.argument("thread")
@click.option("--at", "point", required=True, metavar="SEQ|TIME|EVENT_ID", help="Fork point.")
@click.option("--into", required=True, metavar="NEW_THREAD", help="The new thread's id.")
@click.option("--reason", help="Why (kept in the new thread's lineage).")
@_ACTOR
@_JSON
@click.pass_obj
def fork(
    ctx: CliContext,
    thread: str,
    point: str,
    into: str,
    reason: str | None,
    actor: str,
    as_json: bool,
) -> None:
    """Start NEW_THREAD as a copy of THREAD's state at a point.

    The new thread's first event is thread.Forked (its lineage); THREAD is not changed.
    """

    async def body(kit: Projections) -> ThreadState:
        at_seq = await _point(kit, thread, point)
        result = await kit.commands.fork(
            thread, at_seq=at_seq, into=into, actor=actor, reason=reason, sync="immediate"
        )
        assert result.state is not None
        return result.state

    created = _run(ctx, body)
    if as_json:
        print_json(to_json(created))
        return
    out.print(f"forked {thread!r} into {into!r}")
    out.print(state_view(created, messages=3))


async def _all_threads(kit: Projections) -> list[str]:
    return [t.thread_id for t in await all_threads(kit.log)]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@click.command(
    epilog="""\b
Examples:
  agentlog conflicts            every thread's unresolved conflicts
  agentlog conflicts t-42
  agentlog conflicts --json
"""
)
@click.argument("thread", required=False)
@_JSON
@click.pass_obj
def conflicts(ctx: CliContext, thread: str | None, as_json: bool) -> None:
    """List memory keys in unresolved conflict (manual policy), with their siblings.

    Settle one with `agentlog resolve THREAD KEY --choose EVENT_ID` or `--value JSON`.
    """

    async def body(kit: Projections) -> list[tuple[str, KeyState]]:
        names = [thread] if thread else await _all_threads(kit)
        found: list[tuple[str, KeyState]] = []
        with _progress() as bar:
            task = bar.add_task("scanning threads", total=len(names))
            for name in names:
                current = await kit.reader.state(name)
                found.extend((name, key) for key in current.conflicts())
                bar.advance(task)
        return found

    rows = _run(ctx, body, writes=False)
    if as_json:
        for thread_id, key in rows:
            print_json(
                {
                    "thread_id": thread_id,
                    "key": key.key,
                    "siblings": [
                        {
                            "event_id": s.event_id,
                            "actor": s.actor,
                            "seq": s.seq,
                            "value_json": s.value_json,
                            "version_vector": dict(s.vector),
                        }
                        for s in key.siblings
                    ],
                }
            )
        return
    if not rows:
        out.print("no unresolved conflicts")
        return
    out.print(conflicts_table(rows))


@click.command(
    epilog="""\b
Examples:
  agentlog resolve t-42 plan --choose 0192f0c4-...     keep that sibling's value
  agentlog resolve t-42 plan --value '"merged plan"'   supply a value (JSON)
"""
)
@click.argument("thread")
@click.argument("key")
@click.option("--choose", metavar="EVENT_ID", help="Keep this sibling's value.")
@click.option("--value", "value_json", metavar="JSON", help="Supply a new value (JSON text).")
@_ACTOR
@_JSON
@click.pass_obj
def resolve(
    ctx: CliContext,
    thread: str,
    key: str,
    choose: str | None,
    value_json: str | None,
    actor: str,
    as_json: bool,
) -> None:
    """Settle KEY's conflict in THREAD: append memory.Resolved superseding all siblings."""
    if (choose is None) == (value_json is None):
        raise click.UsageError("give exactly one of --choose EVENT_ID or --value JSON")
    if value_json is not None:
        try:
            json.loads(value_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--value") from None

    async def body(kit: Projections) -> ThreadState:
        result = await kit.commands.resolve(
            thread, key, actor=actor, choose=choose, value_json=value_json, sync="immediate"
        )
        assert result.state is not None
        return result.state

    after = _run(ctx, body)
    settled = after.memory[key]
    if as_json:
        print_json({"thread_id": thread, "key": key, "value_json": settled.value_json,
                    "version": after.version})  # fmt: skip
        return
    out.print(f"resolved {key!r} in thread {thread!r}: {key} = {settled.value_json}", markup=False)


@click.command(
    name="verify",
    epilog="""\b
Examples:
  agentlog verify t-42
  agentlog verify --all
  agentlog verify --all --json
Exit status 1 when any thread fails.
""",
)
@click.argument("thread", required=False)
@click.option("--all", "every", is_flag=True, help="Verify every thread in the log.")
@_JSON
@click.pass_obj
def verify_(ctx: CliContext, thread: str | None, every: bool, as_json: bool) -> None:
    """Rebuild threads from scratch and compare with the live state and every snapshot.

    A pass means snapshots plus the log give exactly the state a full replay gives; a
    failure lists where they differ (and which snapshots are bad: `agentlog rebuild`
    replaces them).
    """
    if (thread is None) == (not every):
        raise click.UsageError("give a THREAD or --all")

    async def body(kit: Projections) -> list[VerifyResult]:
        names = [thread] if thread else await _all_threads(kit)
        results = []
        with _progress() as bar:
            task = bar.add_task("verifying", total=len(names))
            for name in names:
                results.append(await verify(kit.reader, name))
                bar.advance(task)
        return results

    results = _run(ctx, body, writes=False)
    if as_json:
        for r in results:
            print_json(
                {
                    "thread_id": r.thread_id,
                    "version": r.version,
                    "ok": r.ok,
                    "differences": list(r.differences),
                    "snapshots_checked": r.snapshots_checked,
                    "bad_snapshots": list(r.bad_snapshots),
                }
            )
    else:
        out.print(verify_table(results))
    if any(not r.ok for r in results):
        raise SystemExit(1)


@click.command(
    name="rebuild",
    epilog="""\b
Examples:
  agentlog rebuild
  agentlog --log kafka://127.0.0.1:9092 rebuild
""",
)
@_JSON
@click.pass_obj
def rebuild_(ctx: CliContext, as_json: bool) -> None:
    """Drop every snapshot and checkpoint, and fold every thread again from the log.

    Safe at any time: state is always a function of the log. Shows a progress bar.
    """

    async def body(kit: Projections) -> tuple[int, int, int, float, int]:
        total = sum(t.version for t in await all_threads(kit.log))
        with _progress() as bar:
            task = bar.add_task("rebuilding", total=total)
            result = await rebuild(kit.reader, progress=lambda _t, n: bar.advance(task, n))
        count = getattr(kit.reader.observer, "snapshots_saved", 0)
        return result.threads, result.events, int(count), result.seconds, result.position

    threads, events_, snaps, seconds, position = _run(ctx, body, writes=False)
    rate = events_ / seconds if seconds > 0 else 0.0
    if as_json:
        print_json({"threads": threads, "events": events_, "snapshots": snaps,
                    "seconds": round(seconds, 3), "checkpoint": position})  # fmt: skip
        return
    out.print(
        f"rebuilt {threads} threads from {events_} events in {seconds:.2f} s "
        f"({rate:,.0f} events/s); {snaps} snapshots written; checkpoint at position {position}"
    )


@click.command(
    epilog="""\b
Examples:
  agentlog project              apply what is new, then stop
  agentlog project --follow     keep following the log (Ctrl-C stops)
"""
)
@click.option("--follow", is_flag=True, help="Keep following the log until interrupted.")
@click.pass_obj
def project(ctx: CliContext, follow: bool) -> None:
    """Run the projector: apply new events to thread states from its checkpoint, save
    snapshots, and report new manual conflicts as memory.Conflict events."""

    async def body(kit: Projections) -> tuple[int, int]:
        assert kit.projector is not None
        head = await kit.projector.catch_up(within=3600)
        counts = kit.reader.observer
        err.print(f"caught up at log position {head}")
        if follow:
            while kit.projector.failure is None:
                await anyio.sleep(5)
                err.print(f"at log position {kit.projector.applied_position}")
            fail(f"the projector stopped: {kit.projector.failure}")
        return head, int(getattr(counts, "events", 0))

    try:
        head, applied = _run(ctx, body, run_projector=True)
    except KeyboardInterrupt:
        return
    out.print(f"projector at log position {head}; {applied} events applied this run")


COMMANDS = [state, history, rollback, fork, conflicts, resolve, verify_, rebuild_, project]
"""The thread-state commands, as the top-level group adds them."""
