"""What projections report for monitoring: a small observer port.

Projections do not depend on a metrics library: the projector calls a
:class:`ProjectionObserver`, and ``ops`` supplies one that updates Prometheus metrics.
:class:`CountingObserver` keeps plain counters (tests, the CLI's summaries).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


class ProjectionObserver(Protocol):
    """Receives the projection's consistency signals. Calls must be quick and not raise."""

    def applied(self, thread_id: str, events: int, duplicates: int) -> None:
        """``events`` events were applied to a thread, ``duplicates`` skipped as seen."""
        ...

    def lag(self, events: int, seconds: float) -> None:
        """How far the projector is behind the log head: events, and the age of the
        newest applied event while it is behind (0 when caught up)."""
        ...

    def synced(self, seconds: float) -> None:
        """An ``immediate`` write became visible this long after its append returned."""
        ...

    def conflict_detected(self, thread_id: str, key: str) -> None:
        """A ``manual`` key got concurrent siblings (a ``memory.Conflict`` was emitted)."""
        ...

    def conflict_resolved(self, thread_id: str, key: str) -> None:
        """A ``memory.Resolved`` settled a conflict."""
        ...

    def snapshot_saved(self, thread_id: str, seq: int, size: int) -> None:
        """A snapshot of ``size`` bytes was saved."""
        ...

    def snapshot_rejected(self, thread_id: str, reason: str) -> None:
        """A stored snapshot was unusable and ignored."""
        ...

    def verified(self, thread_id: str, ok: bool) -> None:
        """``verify`` compared a thread's live state with a rebuild from scratch."""
        ...


@dataclasses.dataclass
class CountingObserver:
    """An observer that counts what it is told (and remembers the latest lag)."""

    events: int = 0
    duplicates: int = 0
    lag_events: int = 0
    lag_seconds: float = 0.0
    syncs: int = 0
    sync_seconds: float = 0.0
    conflicts_detected: int = 0
    conflicts_resolved: int = 0
    snapshots_saved: int = 0
    snapshot_bytes: int = 0
    snapshots_rejected: int = 0
    verifications: int = 0
    verify_failures: int = 0

    def applied(self, thread_id: str, events: int, duplicates: int) -> None:
        self.events += events
        self.duplicates += duplicates

    def lag(self, events: int, seconds: float) -> None:
        self.lag_events = events
        self.lag_seconds = seconds

    def synced(self, seconds: float) -> None:
        self.syncs += 1
        self.sync_seconds += seconds

    def conflict_detected(self, thread_id: str, key: str) -> None:
        self.conflicts_detected += 1

    def conflict_resolved(self, thread_id: str, key: str) -> None:
        self.conflicts_resolved += 1

    def snapshot_saved(self, thread_id: str, seq: int, size: int) -> None:
        self.snapshots_saved += 1
        self.snapshot_bytes += size

    def snapshot_rejected(self, thread_id: str, reason: str) -> None:
        self.snapshots_rejected += 1

    def verified(self, thread_id: str, ok: bool) -> None:
        self.verifications += 1
        self.verify_failures += 0 if ok else 1
