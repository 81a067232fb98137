"""Turns settings into running components. The one place where backends are chosen.

A log URL's scheme picks the backend from :data:`BACKENDS`, an explicit table (no import by
string). ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` follow the usual
SQLAlchemy convention: the path is what follows ``sqlite:///``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


def _embedded(url: str, settings: Settings) -> EventLog:
    cfg = settings.embedded
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


def _kafka(url: str, settings: Settings) -> EventLog:
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
        sequencer=cfg.sequencer,
        max_event_bytes=cfg.max_event_bytes,
        outcome_timeout=cfg.outcome_timeout,
        options=options,
    )


BACKENDS: dict[str, Callable[[str, Settings], EventLog]] = {
    "sqlite": _embedded,
    "kafka": _kafka,
}
"""Log URL scheme -> constructor of the backend."""


def open_log(settings: Settings, url: str | None = None) -> EventLog:
    """Build (not yet open) the event log that ``url`` or the settings name.

    Raises:
        ConfigError: unknown scheme or unusable URL.
    """
    url = url or settings.log_url()
    scheme = urlsplit(url).scheme
    try:
        make = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise ConfigError(
            f"log URL {url!r}: unknown scheme {scheme!r}; use one of {known}"
        ) from None
    return make(url, settings)
