"""The backends every contract suite runs against.

Each entry makes fresh, empty logs: the embedded log in a new file, the Kafka log on the
run's shared broker (``kafka_broker``) with topics and a sequencer group of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from eventstore import EmbeddedEventLog
from eventstore.kafka import KafkaEventLog, KafkaOptions, KafkaTopology, RetryPolicy
from eventstore.port import EventLog
from tests.contracts.snapshot_stores import pg_schema, snapshot_store  # noqa: F401

LogFactory = Callable[..., AbstractAsyncContextManager[EventLog]]


def _embedded(request: pytest.FixtureRequest, tmp_path: Path, **defaults: object) -> LogFactory:
    counter = iter(range(1_000_000))

    def make(**options: object) -> AbstractAsyncContextManager[EventLog]:
        path = tmp_path / f"log-{next(counter)}.db"
        return EmbeddedEventLog(path, **{**defaults, **options})  # type: ignore[arg-type]

    return make


def _embedded_settling(request: pytest.FixtureRequest, tmp_path: Path) -> LogFactory:
    """The embedded log whose thread index moves its recent part into the settled part
    at nearly every commit, so that every contract also holds across that move."""
    return _embedded(request, tmp_path, settle_rows=2)


#: Kafka client settings for tests: a short session so a new sequencer group forms in
#: about a second, and quick retries.
KAFKA_TEST_OPTIONS = KafkaOptions(
    session_timeout_ms=2000,
    heartbeat_interval_ms=500,
    request_timeout=3.0,
    retry=RetryPolicy(attempts=3, initial_delay=0.2, backoff=2.0),
)


def _kafka(request: pytest.FixtureRequest, tmp_path: Path) -> LogFactory:
    broker = request.getfixturevalue("kafka_broker")
    counter = iter(range(1_000_000))

    def make(**options: object) -> AbstractAsyncContextManager[EventLog]:
        n = next(counter)
        prefix = f"contract-{uuid.uuid4().hex[:10]}-{n}"
        return KafkaEventLog(
            broker.bootstrap,
            tmp_path / f"index-{n}.db",
            topology=KafkaTopology.default(partitions=4, prefix=prefix),
            options=KAFKA_TEST_OPTIONS,
            outcome_timeout=20.0,
            **options,  # type: ignore[arg-type]
        )

    return make


BACKENDS = {"embedded": _embedded, "embedded-settling": _embedded_settling, "kafka": _kafka}


@pytest.fixture(params=sorted(BACKENDS))
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> LogFactory:
    """Factory of fresh logs of the backend under test; call it with backend options."""
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
async def log(make_log: LogFactory) -> AsyncIterator[EventLog]:
    """A fresh, open log of the backend under test."""
    async with make_log() as opened:
        yield opened
