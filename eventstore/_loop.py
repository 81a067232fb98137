"""Decoding read results on the event loop, a slice at a time (both backends)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio.lowlevel

from eventstore.envelope import RecordedEvent

_Row = TypeVar("_Row")

DECODE_SLICE = 250
"""Events decoded on the event loop between two chances for other tasks to run."""


async def decode_on_loop(
    rows: Sequence[_Row], decode: Callable[[Sequence[_Row]], list[RecordedEvent]]
) -> list[RecordedEvent]:
    """``decode(rows)`` on the event loop, :data:`DECODE_SLICE` rows at a time.

    Decoding is Python work: in a worker thread it would not run beside the loop (the
    GIL), only pass the GIL back and forth with it. So reads fetch their rows in a worker
    thread (SQLite releases the GIL meanwhile) and decode here, in slices of a few
    milliseconds. ``decode`` may stop early (a read ``until`` a time): then so does this.
    """
    if len(rows) <= DECODE_SLICE:
        return decode(rows)
    out: list[RecordedEvent] = []
    for start in range(0, len(rows), DECODE_SLICE):
        piece = rows[start : start + DECODE_SLICE]
        decoded = decode(piece)
        out += decoded
        if len(decoded) < len(piece):
            break
        await anyio.lowlevel.checkpoint()
    return out


async def decode_positioned_on_loop(
    rows: Sequence[tuple[int, bytes]], decode: Callable[[bytes, int], RecordedEvent]
) -> list[RecordedEvent]:
    """``(position, body)`` rows (a ``read_all`` page of either backend) decoded on the
    loop, as :func:`decode_on_loop` does."""
    return await decode_on_loop(rows, lambda piece: [decode(b, p) for p, b in piece])
