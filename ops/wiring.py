"""Turns settings into running components. The one place where backends are chosen.

A log URL's scheme picks the backend from :data:`BACKENDS`, an explicit table (no import by
string). ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` follow the usual
SQLAlchemy convention: the path is what follows ``sqlite:///``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from eventstore import EmbeddedEventLog
from eventstore.kafka import (
    KafkaEventLog,
    KafkaOptions,
    KafkaTopology,
    RetryPolicy,
    default_index_path,
    is_host_port,
)
from eventstore.port import EventLog
from ops.settings import Settings
from projections import (
    CountingObserver,
    MergeRules,
    PostgresSnapshotStore,
    ProjectionObserver,
    Projector,
    SnapshotStore,
    SqliteSnapshotStore,
    StateCache,
    StateReader,
    ThreadCommands,
)


class ConfigError(ValueError):
    """A setting has a value agentlog cannot use; the message names the setting."""


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///PATH`` URL.

    Raises:
        ConfigError: the URL has no path.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"log URL {url!r}: expected sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    return Path(url[len(prefix) :])


def _embedded(url: str, settings: Settings, writes: bool = True) -> EventLog:
    cfg = settings.embedded  # one file, no sequencer: writes makes no difference
    return EmbeddedEventLog(
        sqlite_path(url),
        fsync=cfg.fsync,
        max_event_bytes=cfg.max_event_bytes,
        poll_interval=cfg.poll_interval,
        busy_timeout=cfg.busy_timeout,
        cache_mib=cfg.cache_mib,
    )


def kafka_bootstrap(url: str) -> str:
    """The ``host:port[,host:port]`` of a ``kafka://`` URL.

    Raises:
        ConfigError: the URL names no broker, or an address lacks its port.
    """
    prefix = "kafka://"
    addresses = url[len(prefix) :].rstrip("/") if url.startswith(prefix) else ""
    parts = addresses.split(",") if addresses else []
    bad = [a for a in parts if not is_host_port(a)]
    if not parts or bad:
        raise ConfigError(
            f"log URL {url!r}: expected kafka://HOST:PORT[,HOST:PORT]"
            + (f" ({bad[0]!r} is not HOST:PORT)" if bad else "")
        )
    return ",".join(parts)


def _kafka(url: str, settings: Settings, writes: bool = True) -> EventLog:
    cfg = settings.kafka
    bootstrap = kafka_bootstrap(url)
    topology = KafkaTopology.default(
        partitions=cfg.partitions, replication=cfg.replication, prefix=cfg.topic_prefix
    )
    try:
        options = KafkaOptions(
            request_timeout=cfg.request_timeout,
            linger_ms=cfg.linger_ms,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(100, cfg.session_timeout_ms // 4),
            retry=RetryPolicy(cfg.retry_attempts, cfg.retry_initial_delay, cfg.retry_backoff),
        )
    except ValueError as exc:
        raise ConfigError(f"Kafka settings: {exc}") from exc
    return KafkaEventLog(
        bootstrap,
        cfg.index_path or default_index_path(settings.data_dir, bootstrap, topology),
        topology=topology,
        group_id=cfg.group_id,
        # A process that only reads never joins the sequencer group: a one-shot command
        # joining and leaving would make the group rebalance, pausing every append.
        sequencer=cfg.sequencer and writes,
        max_event_bytes=cfg.max_event_bytes,
        outcome_timeout=cfg.outcome_timeout,
        options=options,
    )


BACKENDS: dict[str, Callable[[str, Settings, bool], EventLog]] = {
    "sqlite": _embedded,
    "kafka": _kafka,
}
"""Log URL scheme -> constructor of the backend: (URL, settings, writes) -> log."""


def open_log(settings: Settings, url: str | None = None, *, writes: bool = True) -> EventLog:
    """Build (not yet open) the event log that ``url`` or the settings name.

    Args:
        settings: The settings.
        url: A log URL instead of the configured one.
        writes: False when the caller only reads: on Kafka the log then takes no part in
            sequencing (whatever ``kafka.sequencer`` says), so a short-lived reader does not
            make the sequencer group rebalance.

    Raises:
        ConfigError: unknown scheme or unusable URL.
    """
    url = url or settings.log_url()
    return _by_scheme(BACKENDS, url, "log URL")(url, settings, writes)


T = TypeVar("T")


def _by_scheme(table: Mapping[str, T], url: str, what: str) -> T:
    """The entry of ``table`` for ``url``'s scheme.

    Raises:
        ConfigError: the scheme is not in the table (the message lists those that are).
    """
    scheme = urlsplit(url).scheme
    try:
        return table[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in table)
        raise ConfigError(
            f"{what} {url!r}: unknown scheme {scheme!r}; use one of {known}"
        ) from None


# --- projections -------------------------------------------------------------------------


def merge_rules(settings: Settings) -> MergeRules:
    """The merge policy of each memory key, from the settings.

    Raises:
        ConfigError: an unknown policy name.
    """
    cfg = settings.projections
    try:
        return MergeRules.from_mapping(cfg.policies, cfg.default_policy)
    except ValueError as exc:
        raise ConfigError(f"AGENTLOG_PROJECTIONS__POLICIES: {exc}") from exc


def _sqlite_snapshots(url: str, settings: Settings) -> SnapshotStore:
    try:
        return SqliteSnapshotStore(sqlite_path(url))
    except ConfigError as exc:
        raise ConfigError(f"snapshot store: {exc}") from None


def _postgres_snapshots(url: str, settings: Settings) -> SnapshotStore:
    cfg = settings.projections
    try:
        return PostgresSnapshotStore(
            url,
            schema=cfg.pg_schema,
            min_size=cfg.pool_min,
            max_size=cfg.pool_max,
            max_idle=cfg.pool_idle,
        )
    except ValueError as exc:
        raise ConfigError(f"snapshot store: {exc}") from None


SNAPSHOT_STORES: dict[str, Callable[[str, Settings], SnapshotStore]] = {
    "sqlite": _sqlite_snapshots,
    "postgresql": _postgres_snapshots,
    "postgres": _postgres_snapshots,
}
"""Snapshot store URL scheme -> constructor of the store."""


def open_snapshot_store(settings: Settings) -> SnapshotStore:
    """Build (not yet open) the snapshot store the settings name.

    Raises:
        ConfigError: unknown scheme or unusable URL.
    """
    url = settings.snapshots_url()
    return _by_scheme(SNAPSHOT_STORES, url, "snapshot store URL")(url, settings)


@dataclasses.dataclass(frozen=True, slots=True)
class Projections:
    """Everything a command needs to read and change thread state."""

    log: EventLog
    store: SnapshotStore
    rules: MergeRules
    reader: StateReader
    commands: ThreadCommands
    projector: Projector | None


@contextlib.asynccontextmanager
async def open_projections(
    settings: Settings,
    *,
    log: EventLog | None = None,
    observer: ProjectionObserver | None = None,
    run_projector: bool = False,
    emit_conflicts: bool = True,
    rules: MergeRules | None = None,
    writes: bool = True,
) -> AsyncIterator[Projections]:
    """Open the log (unless given, already open), the snapshot store and, optionally, a
    projector, and wire a reader and commands to them.

    Args:
        settings: The settings.
        log: An open log to use instead of opening the configured one.
        observer: Receives the projection's signals (default: counters).
        run_projector: Start a projector (``immediate`` writes then wait for it).
        emit_conflicts: Whether that projector reports ``memory.Conflict`` events.
        rules: Merge rules instead of the configured ones.
        writes: False when nothing will be appended (see :func:`open_log`).

    Raises:
        ConfigError: a setting cannot be used.
    """
    cfg = settings.projections
    rules = rules or merge_rules(settings)
    store = open_snapshot_store(settings)
    async with contextlib.AsyncExitStack() as stack:
        if log is None:
            log = await stack.enter_async_context(open_log(settings, writes=writes))
        await stack.enter_async_context(store)
        reader = StateReader(
            log,
            store,
            rules,
            snapshot_every=cfg.snapshot_every,
            cache=StateCache(cfg.cache_threads, cfg.cache_ttl),
            observer=observer or CountingObserver(),
        )
        projector = None
        if run_projector:
            projector = await stack.enter_async_context(
                Projector(log, reader, emit_conflicts=emit_conflicts)
            )
        commands = ThreadCommands(
            log,
            reader,
            projector=projector,
            sync=cfg.sync,  # type: ignore[arg-type]  # validated by the settings
            sync_timeout=cfg.sync_timeout,
        )
        yield Projections(log, store, rules, reader, commands, projector)
