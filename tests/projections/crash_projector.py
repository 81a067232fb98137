"""Child process for the projector crash test: runs a projector on a data dir forever.

Usage: python crash_projector.py LOG_DB SNAPSHOT_DB
Prints ``applied POSITION`` whenever it applied more events (flushed at once), so the
parent can kill it (SIGKILL) in the middle of the stream.
"""

from __future__ import annotations

import sys

import anyio

from eventstore import EmbeddedEventLog
from projections import MergeRules, Projector, SqliteSnapshotStore, StateCache, StateReader


async def main(log_path: str, store_path: str) -> None:
    rules = MergeRules.from_mapping({"plan": "manual", "m.*": "merge"})
    async with (
        EmbeddedEventLog(log_path, poll_interval=0.02) as log,
        SqliteSnapshotStore(store_path) as store,
    ):
        reader = StateReader(log, store, rules, snapshot_every=7, cache=StateCache(50))
        async with Projector(log, reader, checkpoint_interval=0.05) as projector:
            seen = 0
            while True:
                await anyio.sleep(0.01)
                if projector.applied_position != seen:
                    seen = projector.applied_position
                    print(f"applied {seen}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
