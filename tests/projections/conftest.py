"""Fixtures of the projection tests: both log backends (from the contract suite), a
SQLite snapshot store, and a reader/commands bundle wired to them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore.port import EventLog
from projections import (
    CountingObserver,
    MergeRules,
    SqliteSnapshotStore,
    StateCache,
    StateReader,
    ThreadCommands,
)
from tests.contracts.conftest import log, make_log  # noqa: F401  # the backend fixtures

RULES = MergeRules.from_mapping({"plan": "manual", "m.*": "merge"})


@dataclasses.dataclass
class Kit:
    log: EventLog
    store: SqliteSnapshotStore
    reader: StateReader
    commands: ThreadCommands
    observer: CountingObserver


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteSnapshotStore]:
    async with SqliteSnapshotStore(tmp_path / "snapshots.db") as opened:
        yield opened


@pytest.fixture
async def kit(log: EventLog, store: SqliteSnapshotStore) -> Kit:  # noqa: F811
    observer = CountingObserver()
    reader = StateReader(log, store, RULES, snapshot_every=5, cache=StateCache(), observer=observer)
    return Kit(log, store, reader, ThreadCommands(log, reader), observer)
