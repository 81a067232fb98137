"""``agentlog demo``: a scripted two-agent conversation written to the log and read back."""

from __future__ import annotations

import json
import time

import click
from rich.markup import escape

from eventstore import NewEvent, RecordedEvent, new_event, uuid7
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
    """Write a short conversation between two agents to the log, then read it back.

    A user asks a planner agent a question; the planner delegates to a researcher over
    A2A messages; both keep working memory (with version vectors); the researcher attaches
    an artifact; the task completes. Everything is an event in the log, so you can read
    it again with `agentlog events cat THREAD` or follow the log with `agentlog events tail`.
    """
    thread_id = thread or f"demo-{uuid7()[-8:]}"
    script = conversation(thread_id)
    url = ctx.settings.log_url()

    async def body() -> tuple[list[RecordedEvent], float]:
        async with ctx.log() as log:
            start = time.perf_counter()
            version = await log.version(thread_id)
            # One event per append, each checked against the version we expect: the same
            # discipline an agent uses so that concurrent writers cannot interleave blindly.
            for event in script:
                result = await log.append(thread_id, [event], expected_version=version)
                version = result.version
            elapsed = time.perf_counter() - start
            return await log.read_thread(thread_id), elapsed

    events, elapsed = run(body)
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
        "\nNext: [bold]agentlog events cat "
        f"{escape(thread_id)}[/] · agentlog events cat {escape(thread_id)} --json"
        " · agentlog schemas list"
    )
