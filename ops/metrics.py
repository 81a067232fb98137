"""Prometheus metrics of agentlog components.

:class:`ProjectionMetrics` is the projections' :class:`~projections.ProjectionObserver`
backed by Prometheus collectors registered in the ``CollectorRegistry`` it is given (each
test uses a fresh one). Names follow ``agentlog_<subsystem>_<name>_<unit>``; no label
carries a thread, event or task id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = tuple(float(1 << n) for n in range(8, 25, 2))  # 256 B .. 16 MiB


class ProjectionMetrics:
    """Projection consistency signals as Prometheus metrics.

    Args:
        registry: Where the collectors are registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "agentlog_projection_events_applied_total",
            "Events applied to thread states.",
            registry=registry,
        )
        self.duplicates = Counter(
            "agentlog_projection_duplicates_skipped_total",
            "Redelivered events skipped because their thread state had them already.",
            registry=registry,
        )
        self.lag_events = Gauge(
            "agentlog_projection_lag_events",
            "Events in the log the projector has not applied yet.",
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "agentlog_projection_lag_seconds",
            "While behind: age of the newest applied event (0 when caught up).",
            registry=registry,
        )
        self.sync = Histogram(
            "agentlog_projection_sync_latency_seconds",
            "Time from an immediate write's append to the projection applying it.",
            buckets=_SYNC_BUCKETS,
            registry=registry,
        )
        self.conflicts_detected = Counter(
            "agentlog_projection_conflicts_detected_total",
            "Manual-policy memory conflicts reported as memory.Conflict events.",
            registry=registry,
        )
        self.conflicts_resolved = Counter(
            "agentlog_projection_conflicts_resolved_total",
            "Memory conflicts settled by memory.Resolved events.",
            registry=registry,
        )
        self.snapshots = Counter(
            "agentlog_projection_snapshots_saved_total",
            "Snapshots of thread state saved.",
            registry=registry,
        )
        self.snapshot_size = Histogram(
            "agentlog_projection_snapshot_size_bytes",
            "Compressed size of saved snapshots.",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.snapshots_rejected = Counter(
            "agentlog_projection_snapshots_rejected_total",
            "Stored snapshots ignored (bad checksum, unknown format); the state was rebuilt.",
            registry=registry,
        )
        self.verify = Counter(
            "agentlog_projection_verify_total",
            "Verify runs (a thread rebuilt from scratch and compared), by result.",
            ["result"],
            registry=registry,
        )

    def applied(self, thread_id: str, events: int, duplicates: int) -> None:
        self.events.inc(events)
        self.duplicates.inc(duplicates)

    def lag(self, events: int, seconds: float) -> None:
        self.lag_events.set(events)
        self.lag_seconds.set(seconds)

    def synced(self, seconds: float) -> None:
        self.sync.observe(seconds)

    def conflict_detected(self, thread_id: str, key: str) -> None:
        self.conflicts_detected.inc()

    def conflict_resolved(self, thread_id: str, key: str) -> None:
        self.conflicts_resolved.inc()

    def snapshot_saved(self, thread_id: str, seq: int, size: int) -> None:
        self.snapshots.inc()
        self.snapshot_size.observe(size)

    def snapshot_rejected(self, thread_id: str, reason: str) -> None:
        self.snapshots_rejected.inc()

    def verified(self, thread_id: str, ok: bool) -> None:
        self.verify.labels(result="pass" if ok else "fail").inc()
