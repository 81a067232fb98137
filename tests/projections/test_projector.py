"""The projector on both backends: applying, checkpoints, duplicates, conflicts, sync;
and a crash test: kill -9 mid-stream, restart, compare with a rebuild from scratch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry

from eventstore import EmbeddedEventLog, new_event
from eventstore.payloads import MemorySet, Message, Part
from eventstore.port import EventLog
from ops.metrics import ProjectionMetrics
from projections import (
    CountingObserver,
    ProjectionClosed,
    Projector,
    SqliteSnapshotStore,
    StateCache,
    StateReader,
    SyncTimeout,
    ThreadCommands,
    verify,
)
from tests.projections.conftest import RULES, Kit

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("crash_projector.py")
ROOT = Path(__file__).resolve().parents[2]


def msg(text: str) -> Message:
    return Message(message_id=f"m-{text}", role="agent", parts=(Part(text=text),))


async def test_projector_applies_snapshots_and_checkpoints(kit: Kit) -> None:
    async with Projector(kit.log, kit.reader, checkpoint_interval=0) as projector:
        for i in range(12):
            await kit.log.append(f"t{i % 3}", [new_event(msg(str(i)), actor="a")])
        head = await projector.catch_up(within=30)
        assert projector.applied_position == head
        assert kit.observer.events == 12
        for t in ("t0", "t1", "t2"):
            cached = kit.reader.cache.get(t) if kit.reader.cache else None
            assert cached is not None and cached.version == 4
    assert await kit.store.checkpoint("default") == head
    # The snapshot of each thread at seq... every 5 events: none has 5 events.
    assert await kit.store.seqs("t0", RULES.digest) == []


async def test_restart_resumes_from_the_checkpoint_without_double_application(
    kit: Kit,
) -> None:
    for i in range(8):
        await kit.log.append("t", [new_event(msg(str(i)), actor="a")])
    async with Projector(kit.log, kit.reader) as projector:
        first = await projector.catch_up(within=30)
    observer = CountingObserver()
    reader = StateReader(kit.log, kit.store, RULES, snapshot_every=5, cache=StateCache(),
                         observer=observer)  # fmt: skip
    for i in range(3):
        await kit.log.append("t", [new_event(msg(f"late {i}"), actor="a")])
    async with Projector(kit.log, reader) as again:
        assert again.applied_position == first
        await again.catch_up(within=30)
    state = await reader.state("t")
    assert len(state.conversation) == 11
    assert observer.events + observer.duplicates == 3  # only what came after the checkpoint


async def test_manual_conflict_is_reported_once_however_many_projectors(kit: Kit) -> None:
    second_reader = StateReader(kit.log, None, RULES, cache=StateCache())
    async with (
        Projector(kit.log, kit.reader) as one,
        Projector(kit.log, second_reader, name="other") as two,
    ):
        base = await kit.commands.set("t", "plan", '"a"', actor="p")
        assert base.state is not None
        context = base.state.memory["plan"].vector
        await kit.commands.set("t", "plan", '"b"', actor="p", context=context)
        await kit.commands.set("t", "plan", '"c"', actor="r", context=context)
        await one.catch_up(within=30)
        await two.catch_up(within=30)
        await one.catch_up(within=30)
        await two.catch_up(within=30)
    events = await kit.log.read_thread("t")
    reports = [e for e in events if e.type == "memory.Conflict"]
    assert len(reports) == 1
    assert {s.value_json for s in reports[0].payload.siblings} == {'"b"', '"c"'}  # type: ignore[attr-defined]
    assert kit.observer.conflicts_detected + second_reader.observer.conflicts_detected == 1  # type: ignore[attr-defined]
    state = await kit.reader.state("t")
    assert [k.key for k in state.conflicts()] == ["plan"]


async def test_conflicts_settled_while_catching_up_are_not_reported(kit: Kit) -> None:
    base = await kit.commands.set("t", "plan", '"a"', actor="p")
    assert base.state is not None
    context = base.state.memory["plan"].vector
    await kit.commands.set("t", "plan", '"b"', actor="p", context=context)
    await kit.commands.set("t", "plan", '"c"', actor="r", context=context)
    siblings = (await kit.reader.state("t")).memory["plan"].siblings
    await kit.commands.resolve("t", "plan", actor="h", choose=siblings[0].event_id)
    async with Projector(kit.log, StateReader(kit.log, None, RULES, cache=StateCache())) as p:
        await p.catch_up(within=30)
    assert [e.type for e in await kit.log.read_thread("t")].count("memory.Conflict") == 0


async def test_immediate_writes_wait_for_the_projector(kit: Kit) -> None:
    registry = CollectorRegistry()
    metrics = ProjectionMetrics(registry)
    reader = StateReader(kit.log, kit.store, RULES, cache=StateCache(), observer=metrics)
    async with Projector(kit.log, reader) as projector:
        commands = ThreadCommands(kit.log, reader, projector=projector, sync="immediate")
        result = await commands.set("t", "x", "1", actor="a")
        assert result.state is not None and result.state.values() == {"x": "1"}
        assert projector.applied_position >= result.append.positions[0]
        lazy = await commands.set("t", "x", "2", actor="a", sync="lazy")
        assert lazy.state is None
        with pytest.raises(SyncTimeout, match=r"did not apply it within 0\.05 s"):
            await projector.wait_applied("t", 10**9, within=0.05)
        await projector.catch_up(within=30)
    assert registry.get_sample_value("agentlog_projection_sync_latency_seconds_count") == 1
    assert registry.get_sample_value("agentlog_projection_events_applied_total") == 2
    with pytest.raises(ProjectionClosed):
        await projector.wait_applied("t", 10**9, within=1)


async def test_a_closed_projector_cannot_restart(kit: Kit) -> None:
    projector = Projector(kit.log, kit.reader)
    async with projector:
        pass
    with pytest.raises(ProjectionClosed, match="cannot be restarted"):
        await projector.__aenter__()


async def test_projector_needs_a_cache(log: EventLog) -> None:
    with pytest.raises(ValueError, match="cache"):
        Projector(log, StateReader(log, None, RULES))


def _spawn(log_path: Path, store_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(log_path), str(store_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _wait_applied(proc: subprocess.Popen[str], at_least: int) -> int:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"projector ended early: {proc.stderr.read() if proc.stderr else ''}"
            )
        position = int(line.split()[1])
        if position >= at_least:
            return position


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.mark.slow
async def test_killed_projector_resumes_without_loss_or_double_application(
    tmp_path: Path,
) -> None:
    log_path, store_path = tmp_path / "log.db", tmp_path / "snapshots.db"
    async with EmbeddedEventLog(log_path) as log, SqliteSnapshotStore(store_path) as store:
        reader = StateReader(log, store, RULES, snapshot_every=7, cache=StateCache())
        commands = ThreadCommands(log, reader, sync="lazy")

        async def stream(rounds: int, start: int) -> None:
            for i in range(start, start + rounds):
                thread = f"t{i % 5}"
                await log.append(thread, [new_event(msg(str(i)), actor="u")])
                await commands.set(thread, f"m.n{i % 3}", str(i), actor=f"a{i % 2}", kind="counter")
                await log.append(
                    thread, [new_event(MemorySet(key="plain", value_json=str(i)), actor="u")]
                )

        proc = _spawn(log_path, store_path)
        try:
            await stream(60, 0)
            reached = await anyio.to_thread.run_sync(_wait_applied, proc, 150)
        finally:
            _kill(proc)  # mid-stream: more events are on their way
        await stream(40, 60)
        checkpoint = await store.checkpoint("default")
        # Killed mid-stream: it got somewhere, and the events appended since wait for it.
        assert reached >= 150 and 0 < checkpoint < await log.head()
        proc = _spawn(log_path, store_path)
        try:
            head = await log.head()
            await anyio.to_thread.run_sync(_wait_applied, proc, head)
        finally:
            _kill(proc)
        for thread in (f"t{i}" for i in range(5)):
            result = await verify(reader, thread)
            assert result.ok, result
            assert result.snapshots_checked > 0
            state = await reader.state(thread)
            assert len(state.conversation) == 20  # each message applied exactly once
            assert state == await reader.scratch(thread)
        assert await store.checkpoint("default") > checkpoint
