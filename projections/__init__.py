"""agentlog projections: per-thread state rebuilt from the event log.

* :mod:`projections.state` — :class:`ThreadState` (conversation, memory, tasks, routing,
  lineage); :mod:`projections.fold` folds events into it (pure).
* :mod:`projections.vectors` and :mod:`projections.memory` — version vectors and the merge
  policies (``last-write-wins``, ``merge``, ``manual``) of memory keys (pure).
* :class:`StateReader` — live state and time travel (``state_at``) from snapshots + log.
* :class:`Projector` — follows the log, keeps hot states, snapshots and a checkpoint, and
  reports ``manual`` conflicts as ``memory.Conflict`` events.
* :class:`ThreadCommands` — memory writes with version vectors, resolve, rollback, fork.
* :func:`verify`, :func:`last_consistent_seq`, :func:`rebuild` — checking and rebuilding.
* Snapshot stores: :class:`SqliteSnapshotStore` (embedded default),
  :class:`PostgresSnapshotStore` (psycopg 3).

Errors derive from :class:`ProjectionError` (see :mod:`projections.errors` for the tree).
"""

from projections.cache import StateCache
from projections.commands import SYNC_MODES, SyncMode, ThreadCommands, WriteResult, next_vector
from projections.errors import (
    GapInThread,
    NoConflict,
    NothingToRollBack,
    PointNotFound,
    ProjectionClosed,
    ProjectionError,
    SiblingNotFound,
    SnapshotStoreError,
    SnapshotStoreUnavailable,
    SyncTimeout,
    ThreadDiverged,
    ThreadExists,
    ThreadNotFound,
)
from projections.fold import apply_fork, apply_rollback, fold
from projections.memory import POLICIES, KeyState, MergeRules, Policy, Write
from projections.observe import CountingObserver, ProjectionObserver
from projections.port import SnapshotStore
from projections.postgres_store import PostgresSnapshotStore
from projections.projector import Projector
from projections.reader import DEFAULT_SNAPSHOT_EVERY, LineageTooDeep, StateReader
from projections.serial import Snapshot, SnapshotInvalid
from projections.sqlite_store import SqliteSnapshotStore
from projections.state import (
    ArtifactView,
    ConversationEntry,
    ForkRecord,
    Lineage,
    RollbackRecord,
    RoutingRecord,
    TaskStatusEntry,
    TaskView,
    ThreadState,
)
from projections.vectors import LOG_CLOCK, Order, VersionVector
from projections.verify import RebuildResult, VerifyResult, last_consistent_seq, rebuild, verify

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "LOG_CLOCK",
    "POLICIES",
    "SYNC_MODES",
    "ArtifactView",
    "ConversationEntry",
    "CountingObserver",
    "ForkRecord",
    "GapInThread",
    "KeyState",
    "Lineage",
    "LineageTooDeep",
    "MergeRules",
    "NoConflict",
    "NothingToRollBack",
    "Order",
    "PointNotFound",
    "Policy",
    "PostgresSnapshotStore",
    "ProjectionClosed",
    "ProjectionError",
    "ProjectionObserver",
    "Projector",
    "RebuildResult",
    "RollbackRecord",
    "RoutingRecord",
    "SiblingNotFound",
    "Snapshot",
    "SnapshotInvalid",
    "SnapshotStore",
    "SnapshotStoreError",
    "SnapshotStoreUnavailable",
    "SqliteSnapshotStore",
    "StateCache",
    "StateReader",
    "SyncMode",
    "SyncTimeout",
    "TaskStatusEntry",
    "TaskView",
    "ThreadCommands",
    "ThreadDiverged",
    "ThreadExists",
    "ThreadNotFound",
    "ThreadState",
    "VerifyResult",
    "VersionVector",
    "Write",
    "WriteResult",
    "apply_fork",
    "apply_rollback",
    "fold",
    "last_consistent_seq",
    "next_vector",
    "rebuild",
    "verify",
]
