"""Snapshots of thread state as bytes: versioned, compressed, checksummed.

A snapshot body is the state as JSON (every field by name, bytes as base64), compressed
with zlib. The store keeps, beside the body, the format version, a BLAKE2b checksum of the
body, and the digest of the merge rules the state was folded under. :func:`decode` refuses
a body whose checksum or format does not match with :class:`SnapshotInvalid`; stores skip
such snapshots (with a warning) and the state is rebuilt from the log.

``FORMAT`` changes whenever the state's shape changes, so an old snapshot is never read as
a new state: it is ignored and rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from projections.errors import ProjectionError
from projections.state import ThreadState

FORMAT = 1
"""The snapshot format this code writes and reads."""

_STATE = TypeAdapter(ThreadState)


class SnapshotInvalid(ProjectionError):
    """A snapshot cannot be used: damaged, of an unknown format, or not what it claims."""

    def __init__(self, thread_id: str, seq: int, detail: str) -> None:
        self.thread_id = thread_id
        self.seq = seq
        self.detail = detail
        super().__init__(f"snapshot of thread {thread_id!r} at seq {seq}: {detail}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A stored snapshot: the state of ``thread_id`` at ``seq``, encoded.

    Attributes:
        thread_id: The thread.
        seq: The state's version.
        high_time: The latest ``occurred_at`` among the thread's events 1..seq (a state
            "as of" a time T may start from this snapshot iff ``high_time <= T``).
        rules_digest: The merge rules it was folded under.
        format: Its format version.
        checksum: BLAKE2b-128 of ``body``, hex.
        body: The compressed state.
    """

    thread_id: str
    seq: int
    high_time: datetime | None
    rules_digest: str
    format: int
    checksum: str
    body: bytes


def checksum(body: bytes) -> str:
    """The checksum stored beside a body."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def encode(state: ThreadState, rules_digest: str) -> Snapshot:
    """Encode ``state`` as a snapshot (zlib level 1: fast, about 3x smaller here)."""
    body = zlib.compress(_STATE.dump_json(state), 1)
    return Snapshot(
        thread_id=state.thread_id,
        seq=state.version,
        high_time=state.high_time,
        rules_digest=rules_digest,
        format=FORMAT,
        checksum=checksum(body),
        body=body,
    )


def decode(snapshot: Snapshot) -> ThreadState:
    """The state a snapshot holds.

    Raises:
        SnapshotInvalid: wrong checksum, unknown format, a body that does not decompress
            or parse, or a state of another thread or seq than the snapshot claims.
    """
    where = (snapshot.thread_id, snapshot.seq)
    if snapshot.format != FORMAT:
        raise SnapshotInvalid(*where, f"format {snapshot.format}, this version reads {FORMAT}")
    if checksum(snapshot.body) != snapshot.checksum:
        raise SnapshotInvalid(*where, "checksum mismatch (the stored body is damaged)")
    try:
        state = _STATE.validate_json(zlib.decompress(snapshot.body))
    except (zlib.error, ValidationError) as exc:
        raise SnapshotInvalid(*where, f"body does not decode: {exc}") from exc
    if state.thread_id != snapshot.thread_id or state.version != snapshot.seq:
        raise SnapshotInvalid(
            *where, f"body holds thread {state.thread_id!r} at seq {state.version}"
        )
    return state


def to_json(state: ThreadState) -> dict[str, Any]:
    """The state as plain JSON values (what ``agentlog state --json`` prints)."""
    return _STATE.dump_python(state, mode="json")  # type: ignore[no-any-return]


def from_json(value: Any) -> ThreadState:
    """A state from :func:`to_json`'s output (``Any``: plain JSON values).

    Raises:
        pydantic.ValidationError: the value is not a thread state.
    """
    return _STATE.validate_python(value)
