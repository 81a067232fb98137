"""``agentlog demo``: a scripted two-agent conversation written to the log and read back."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta

import click
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from eventstore import NewEvent, RecordedEvent, new_event, utc_now, uuid7
from eventstore.payloads import (
    Artifact,
    MemoryDelete,
    MemorySet,
    Message,
    Part,
    Payload,
    TaskStatusUpdate,
)
from ops.cli._context import CliContext, run
from ops.cli._render import event_table, out
from ops.cli._state_view import key_value
from ops.settings import DEMO_POLICIES
from ops.wiring import Projections, merge_rules, open_projections
from projections import MergeRules, ThreadState

_QUESTION = (
    "Which event stores keep per-thread order and still let many agents write at once? "
    "Give me a short comparison."
)


class _Script:
    """Builds the events of the demo conversation, keeping each agent's version vector."""

    def __init__(self, thread: str) -> None:
        self.thread = thread
        self.clock: dict[str, int] = {}
        self.events: list[NewEvent] = []

    def emit(self, actor: str, payload: Payload, *, causal: bool = False) -> None:
        if causal:
            self.clock[actor] = self.clock.get(actor, 0) + 1
        self.events.append(
            new_event(
                payload,
                actor=actor,
                version_vector=dict(self.clock) if causal else {},
                correlation_id=self.thread,
            )
        )


def conversation(thread: str) -> list[NewEvent]:
    """The scripted events: a user, a planner agent and a researcher agent."""
    task = f"task-{thread}"
    s = _Script(thread)
    say = Message
    s.emit(
        "user",
        say(message_id=uuid7(), role="user", parts=(Part(text=_QUESTION),), context_id=thread),
    )
    s.emit("planner", TaskStatusUpdate(task_id=task, context_id=thread, state="submitted"))
    s.emit(
        "planner", MemorySet(key="goal", value_json=json.dumps("compare event stores")), causal=True
    )
    s.emit(
        "planner", MemorySet(key="scratch", value_json=json.dumps("ask researcher")), causal=True
    )
    s.emit(
        "planner",
        say(
            message_id=uuid7(),
            role="agent",
            task_id=task,
            context_id=thread,
            parts=(
                Part(text="Researcher: list event stores with per-stream order, many writers."),
            ),
        ),
    )
    s.emit("researcher", TaskStatusUpdate(task_id=task, context_id=thread, state="working"))
    s.emit(
        "researcher", MemorySet(key="sources_checked", value_json="3", kind="counter"), causal=True
    )
    findings = [
        "Kafka: order per partition",
        "EventStoreDB: expected version per stream",
        "SQLite log: one writer, group commit",
    ]
    s.emit(
        "researcher",
        MemorySet(key="findings", value_json=json.dumps(findings), kind="list"),
        causal=True,
    )
    s.emit(
        "researcher",
        Artifact(
            task_id=task,
            artifact_id=uuid7(),
            context_id=thread,
            name="comparison.md",
            parts=(
                Part(
                    text="| store | ordering | concurrency |\n| Kafka | partition | one writer |",
                    media_type="text/markdown",
                ),
            ),
        ),
    )
    s.emit(
        "researcher",
        say(
            message_id=uuid7(),
            role="agent",
            task_id=task,
            context_id=thread,
            parts=(Part(text="Done: three stores compared, table attached."),),
        ),
    )
    s.emit("planner", MemoryDelete(key="scratch"), causal=True)
    s.emit(
        "planner",
        TaskStatusUpdate(
            task_id=task,
            context_id=thread,
            state="completed",
            final=True,
            message=say(
                message_id=uuid7(),
                role="agent",
                parts=(
                    Part(
                        text="All three keep order per stream; they differ in who orders writers."
                    ),
                ),
            ),
        ),
    )
    return s.events


@dataclasses.dataclass(frozen=True, slots=True)
class _Contest:
    """Two agents writing one key concurrently, and what the key's policy made of it."""

    key: str
    policy: str
    base: str
    planner: str
    researcher: str
    result: str


# key, kind, value before, planner's write, researcher's write
_CONTESTS = (
    ("demo.lww.owner", "value", '"user"', '"planner"', '"researcher"'),
    ("demo.merge.sources", "counter", "3", "5", "4"),
    ("demo.merge.stores", "set", '["kafka","sqlite"]', '["kafka","sqlite","nats"]', '["sqlite"]'),
    ("demo.merge.steps", "list", '["read"]', '["read", "outline"]', '["read", "benchmark"]'),
    ("demo.manual.plan", "value", '"draft"', '"ship on Friday"', '"ship on Monday"'),
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Tour:
    contests: list[_Contest]
    conflict_event: RecordedEvent | None
    resolved: ThreadState
    before_contest: int
    at_before: ThreadState
    before_rollback: ThreadState
    after_rollback: ThreadState
    history: int


async def _tour(kit: Projections, thread_id: str) -> _Tour:
    """Concurrent writers under each policy, a resolved conflict, time travel, rollback."""
    commands, reader = kit.commands, kit.reader
    now = utc_now()
    for key, kind, base, _, _ in _CONTESTS:
        await commands.set(thread_id, key, base, actor="planner", kind=kind)  # type: ignore[arg-type]
    seen = await reader.state(thread_id)
    before_contest = seen.version
    # Both agents read the same state, then write without seeing each other's write:
    # their version vectors are concurrent, so each key's merge policy decides.
    for key, kind, _, mine, theirs in _CONTESTS:
        context = seen.memory[key].vector
        for actor, value, later in (("planner", mine, 0), ("researcher", theirs, 1)):
            await commands.set(
                thread_id,
                key,
                value,
                actor=actor,
                kind=kind,  # type: ignore[arg-type]
                context=context,
                occurred_at=now + timedelta(milliseconds=later),
            )
    assert kit.projector is not None
    await kit.projector.catch_up()  # the projector reports the manual conflict
    contested = await reader.state(thread_id)
    contests = [
        _Contest(key, contested.memory[key].policy, base, mine, theirs, _result(contested, key))
        for key, _, base, mine, theirs in _CONTESTS
    ]
    conflict_event = next(
        (e for e in reversed(await kit.log.read_thread(thread_id)) if e.type == "memory.Conflict"),
        None,
    )
    plan = contested.memory["demo.manual.plan"]
    chosen = next(s for s in plan.siblings if s.actor == "planner")
    result = await commands.resolve(
        thread_id, "demo.manual.plan", actor="human", choose=chosen.event_id, sync="immediate"
    )
    assert result.state is not None
    resolved = result.state
    at_before = await reader.state_at(thread_id, seq=before_contest)
    rolled = await commands.rollback(
        thread_id,
        to_seq=before_contest,
        reason="demo: undo the concurrent writes",
        actor="human",
        sync="immediate",
    )
    assert rolled.state is not None
    return _Tour(
        contests=contests,
        conflict_event=conflict_event,
        resolved=resolved,
        before_contest=before_contest,
        at_before=at_before,
        before_rollback=resolved,
        after_rollback=rolled.state,
        history=rolled.append.version,
    )


def _result(state: ThreadState, key: str) -> str:
    found = state.memory[key]
    if found.conflicted:
        return f"conflict: {len(found.siblings)} siblings kept"
    return key_value(found)


def _demo_rules(ctx: CliContext) -> MergeRules:
    rules = merge_rules(ctx.settings)
    patterns: dict[str, str] = dict(rules.rules)
    for pattern, policy in DEMO_POLICIES.items():
        patterns.setdefault(pattern, policy)
    return MergeRules.from_mapping(patterns, rules.default)


def _memory_lines(state: ThreadState) -> list[str]:
    return [
        f"  {k} = {key_value(state.memory[k])}"
        for k in sorted(state.memory)
        if k.startswith("demo.")
    ]


@click.command(
    epilog="""\b
Examples:
  agentlog demo
  agentlog --data-dir /tmp/agentlog-demo demo
  agentlog --log sqlite:///demo.db demo --thread my-first-thread
"""
)
@click.option("--thread", metavar="THREAD", help="Thread id to write (default: a new demo-… id).")
@click.pass_obj
def demo(ctx: CliContext, thread: str | None) -> None:
    """Write a short two-agent conversation to the log, then tour what projections do.

    A user asks a planner agent a question; the planner delegates to a researcher over
    A2A messages; both keep working memory (with version vectors); the researcher attaches
    an artifact; the task completes. Then both agents write the same memory keys at
    once, and each key's merge policy decides (last-write-wins, merge for a counter, a
    set and a list, manual for the plan, which a human resolves); the state is read as of
    an earlier point, and the thread is rolled back to it, with the state before and after.
    Everything is an event in the log: see it again with `agentlog history THREAD`.
    """
    thread_id = thread or f"demo-{uuid7()[-8:]}"
    script = conversation(thread_id)
    url = ctx.settings.log_url()

    async def body() -> tuple[list[RecordedEvent], float, _Tour]:
        async with open_projections(
            ctx.settings, run_projector=True, rules=_demo_rules(ctx)
        ) as kit:
            log = kit.log
            start = time.perf_counter()
            version = await log.version(thread_id)
            # One event per append, each checked against the version we expect: the same
            # discipline an agent uses so that concurrent writers cannot interleave blindly.
            for event in script:
                result = await log.append(thread_id, [event], expected_version=version)
                version = result.version
            elapsed = time.perf_counter() - start
            written = await log.read_thread(thread_id, version - len(script) + 1, version)
            return written, elapsed, await _tour(kit, thread_id)

    events, elapsed, tour = run(body)
    out.print(
        f"Wrote {len(script)} events to thread [bold]{escape(thread_id)}[/] in {escape(url)} "
        f"({elapsed * 1000:.1f} ms).\n"
    )
    out.print(event_table(events, title=f"thread {thread_id}"))
    memory: dict[str, str] = {}
    for event in events:
        if isinstance(event.payload, MemorySet):
            memory[event.payload.key] = event.payload.value_json
        elif isinstance(event.payload, MemoryDelete):
            memory.pop(event.payload.key, None)
    out.print("\nWorking memory after the conversation (folded from the events):")
    for key, value in memory.items():
        out.print(f"  {key} = {value}", markup=False)

    out.print(
        "\n[bold]Two agents write the same keys at once[/] (concurrent version vectors); "
        "the policy is in each key's name (lww = last-write-wins):"
    )
    table = Table(box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("key", no_wrap=True)
    for name in ("before", "planner", "researcher", "result"):
        table.add_column(name, overflow="fold")
    for c in tour.contests:
        cells = (c.key, c.base, c.planner, c.researcher, c.result)
        table.add_row(*(Text(v) for v in cells))
    out.print(table)
    if tour.conflict_event is not None:
        out.print(
            f"The projector reported the manual conflict as memory.Conflict (seq "
            f"{tour.conflict_event.seq}); a human chose the planner's value:"
        )
    plan = tour.resolved.memory["demo.manual.plan"]
    out.print(
        f"  demo.manual.plan = {plan.value_json} (memory.Resolved, seq {tour.resolved.version})",
        markup=False,
    )
    out.print(f"\n[bold]Time travel[/]: memory as of seq {tour.before_contest}, before the writes:")
    for line in _memory_lines(tour.at_before):
        out.print(line, markup=False)
    out.print(
        f"\n[bold]Rollback[/] to seq {tour.before_contest} (appended as "
        f"thread.RolledBack at seq {tour.after_rollback.version}); before:"
    )
    for line in _memory_lines(tour.before_rollback):
        out.print(line, markup=False)
    out.print("after:")
    for line in _memory_lines(tour.after_rollback):
        out.print(line, markup=False)
    out.print(
        f"Nothing was deleted: the thread keeps all {tour.history} events "
        "(agentlog history shows which a rollback undid)."
    )
    out.print(
        f"\nNext: [bold]agentlog state {escape(thread_id)}[/] · agentlog history "
        f"{escape(thread_id)} · agentlog state {escape(thread_id)} --at {tour.before_contest}"
        f" · agentlog verify {escape(thread_id)} · agentlog events cat {escape(thread_id)} --json"
    )
