"""Child process for the crash tests: appends forever, printing each acknowledged append.

Usage: python crash_writer.py DB_PATH WRITERS [THREAD]
Prints ``ack EVENT_ID POSITION SEQ THREAD`` after each append returns, flushed at once, so
the parent knows exactly what was acknowledged before it kills this process.
With THREAD, every writer appends to that one thread with expected versions (lost races
print ``lost``), which exercises cross-process optimistic concurrency.
``SETTLE_ROWS`` in the environment sets the log's ``settle_rows``.
"""

from __future__ import annotations

import os
import sys

import anyio

from eventstore import EmbeddedEventLog, WrongExpectedVersion, new_event
from eventstore.payloads import Message, Part


async def main(path: str, writers: int, shared: str | None) -> None:
    settle = {"settle_rows": int(os.environ["SETTLE_ROWS"])} if "SETTLE_ROWS" in os.environ else {}
    async with EmbeddedEventLog(path, **settle) as log:

        async def writer(w: int) -> None:
            n = 0
            while True:
                n += 1
                thread = shared or f"crash-{w}"
                e = new_event(
                    Message(message_id=f"{w}-{n}", role="agent", parts=(Part(text="x" * 300),)),
                    actor=f"w{w}",
                )
                try:
                    if shared:
                        version = await log.version(thread)
                        r = await log.append(thread, [e], expected_version=version)
                    else:
                        r = await log.append(thread, [e])
                except WrongExpectedVersion:
                    print("lost", flush=True)
                    continue
                print(f"ack {e.event_id} {r.positions[0]} {r.first_seq} {thread}", flush=True)

        async with anyio.create_task_group() as tg:
            for w in range(writers):
                tg.start_soon(writer, w)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
