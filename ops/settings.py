"""Settings of the ``agentlog`` deployables, read once from the environment and flags.

Environment variables use the prefix ``AGENTLOG_`` and ``__`` between nested names, e.g.
``AGENTLOG_LOG=sqlite:///.agentlog/agentlog.db``, ``AGENTLOG_EMBEDDED__FSYNC=true`` or
``AGENTLOG_KAFKA__PARTITIONS=16``; projections:
``AGENTLOG_PROJECTIONS__SNAPSHOTS=postgresql://postgres@127.0.0.1:5432/agentlog``,
``AGENTLOG_PROJECTIONS__POLICIES='{"plan": "manual"}'``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from projections import POLICIES, SYNC_MODES

_POLICY_NAMES = ", ".join(POLICIES[:-1]) + f" or {POLICIES[-1]}"

DEFAULT_DATA_DIR = Path(".agentlog")
"""Where the embedded log lives unless configured otherwise."""


class EmbeddedSettings(BaseModel):
    """Settings of the embedded (SQLite) event log."""

    fsync: bool = Field(
        default=False,
        description="Sync every commit group to disk (survives power loss); otherwise a "
        "committed append survives a crash of the process but not of the machine.",
    )
    max_event_bytes: int = Field(
        default=1 << 20, ge=64, description="Largest encoded event accepted."
    )
    poll_interval: float = Field(
        default=0.2,
        gt=0,
        description="Seconds between checks for other processes' appends when tailing.",
    )
    cache_mib: int = Field(
        default=256, ge=1, description="SQLite page cache per connection, at most, in MiB."
    )
    busy_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for another process's write lock."
    )


class KafkaSettings(BaseModel):
    """Settings of the Kafka event log (``--log kafka://HOST:PORT``); see docs/kafka.md."""

    topic_prefix: str = Field(
        default="agentlog",
        min_length=1,
        description="Topics are PREFIX.threads and PREFIX.commands.",
    )
    partitions: int = Field(
        default=8, ge=1, description="Partitions of both topics (when agentlog creates them)."
    )
    replication: int = Field(
        default=1, ge=1, description="Replication factor of both topics (when created)."
    )
    group_id: str | None = Field(
        default=None,
        description="The sequencers' consumer group (default PREFIX.threads.sequencer).",
    )
    sequencer: bool = Field(
        default=True,
        description="Take part in sequencing appends (at least one process per cluster must).",
    )
    index_path: Path | None = Field(
        default=None,
        description="The local thread index file (default: a file per cluster in the data dir).",
    )
    max_event_bytes: int = Field(
        default=1 << 20, ge=64, description="Largest encoded event accepted."
    )
    outcome_timeout: float = Field(
        default=30.0, gt=0, description="Seconds an append waits for the sequencer's answer."
    )
    request_timeout: float = Field(
        default=5.0, gt=0, description="Seconds one request to the broker may take."
    )
    retry_attempts: int = Field(default=3, ge=1, description="Sends tried before giving up.")
    retry_initial_delay: float = Field(
        default=1.0, ge=0, description="Seconds before the first retry."
    )
    retry_backoff: float = Field(
        default=2.0, ge=1, description="Each further retry waits this many times longer."
    )
    linger_ms: int = Field(default=2, ge=0, description="Producer batching delay.")
    fetch_max_wait_ms: int = Field(
        default=10, ge=1, description="How long a tailing fetch waits for new records."
    )
    session_timeout_ms: int = Field(
        default=4000, ge=1000, description="The sequencer group's session timeout."
    )


DEMO_POLICIES = {"demo.merge.*": "merge", "demo.manual.*": "manual"}
"""The rules of the demo's memory keys; part of the default policies so that every
command reading a demo thread folds it as the demo did."""


class ProjectionSettings(BaseModel):
    """Settings of projections: snapshots, the read cache, merge policies, sync mode."""

    snapshots: str | None = Field(
        default=None,
        description="Snapshot store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB. "
        "Default: snapshots.db in the data dir.",
    )
    pg_schema: str = Field(
        default="agentlog", min_length=1, description="PostgreSQL schema of the snapshot tables."
    )
    pool_min: int = Field(default=5, ge=1, description="PostgreSQL pool: connections kept open.")
    pool_max: int = Field(default=20, ge=1, description="PostgreSQL pool: most connections.")
    pool_idle: float = Field(
        default=30.0, gt=0, description="PostgreSQL pool: seconds an idle connection is kept."
    )
    snapshot_every: int = Field(
        default=100, ge=0, description="Snapshot each thread every N events (0: never)."
    )
    cache_threads: int = Field(default=1000, ge=1, description="Hot thread states cached.")
    cache_ttl: float = Field(default=300.0, gt=0, description="Seconds a cached state is served.")
    default_policy: str = Field(
        default="last-write-wins",
        description="Merge policy of memory keys no rule names: last-write-wins, merge, manual.",
    )
    policies: dict[str, str] = Field(
        default_factory=lambda: dict(DEMO_POLICIES),
        description='Merge policy per key or key prefix, as JSON: {"plan": "manual", '
        '"counts.*": "merge"} (exact keys first, then the longest prefix). The default '
        "holds only the rules of `agentlog demo`'s keys (demo.merge.*, demo.manual.*).",
    )
    sync: str = Field(
        default="immediate",
        description="immediate: a write returns once the projection applied it; lazy: once "
        "appended.",
    )
    sync_timeout: float = Field(
        default=10.0, gt=0, description="Seconds an immediate write waits for the projection."
    )

    @field_validator("sync")
    @classmethod
    def _known_sync(cls, value: str) -> str:
        if value not in SYNC_MODES:
            raise ValueError(f"sync mode {value!r}: use {' or '.join(SYNC_MODES)}")
        return value

    @field_validator("default_policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in POLICIES:
            raise ValueError(f"policy {value!r}: use {_POLICY_NAMES}")
        return value

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern, policy in value.items():
            if policy not in POLICIES:
                raise ValueError(f"policy {policy!r} for {pattern!r}: use {_POLICY_NAMES}")
        return value


class Settings(BaseSettings):
    """Everything the ``agentlog`` command and server read from their environment."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTLOG_", env_nested_delimiter="__", extra="ignore"
    )

    log: str | None = Field(
        default=None,
        description="Event log URL: sqlite:///PATH (relative), sqlite:////ABS/PATH or "
        "kafka://HOST:PORT[,HOST:PORT]. Default: sqlite in the data dir.",
    )
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, description="Folder for the embedded log and state."
    )
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    projections: ProjectionSettings = Field(default_factory=ProjectionSettings)

    @field_validator("log")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(
                f"log URL {value!r} has no scheme; use sqlite:///PATH or kafka://HOST:PORT"
            )
        return value

    def log_url(self) -> str:
        """The event log URL in force (the configured one, or the data dir's SQLite file)."""
        if self.log:
            return self.log
        return f"sqlite:///{self.data_dir / 'agentlog.db'}"

    def snapshots_url(self) -> str:
        """The snapshot store URL in force (configured, or the data dir's SQLite file)."""
        if self.projections.snapshots:
            return self.projections.snapshots
        return f"sqlite:///{self.data_dir / 'snapshots.db'}"
