"""Kafka client settings shared by the backend's producer and consumers, and the retry rule.

Every knob the backend passes to aiokafka lives in :class:`KafkaOptions`, with the reason
for its default; see ``docs/kafka.md`` ("Latency knobs") for the measurements behind them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

# aiokafka ships no type information (no py.typed): its names are Any here.
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError

from eventstore.errors import BrokerUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNREACHABLE: tuple[type[BaseException], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    TimeoutError,
    OSError,
)
"""Errors that mean the broker could not be reached or did not answer in time."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, a send to the broker is tried.

    Attempt ``n`` (from 1) that fails waits ``initial_delay * backoff ** (n - 1)`` seconds
    before attempt ``n + 1``; after ``attempts`` failures the error is raised. Defaults: 3
    attempts, 1 s then 2 s apart.
    """

    attempts: int = 3
    initial_delay: float = 1.0
    backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")
        if self.initial_delay < 0 or self.backoff < 1:
            raise ValueError(
                "retry initial_delay must be >= 0 and backoff >= 1, got "
                f"{self.initial_delay} and {self.backoff}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (counted from 1)."""
        return float(self.initial_delay * self.backoff ** (attempt - 1))


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaOptions:
    """Client settings of the Kafka backend.

    Attributes:
        request_timeout: Seconds one request may take before it counts as failed (the
            producer's send, a consumer's offset lookup). Bounds how long a send to a
            broker that is down takes: ``attempts * request_timeout`` plus the back-off.
        linger_ms: How long the command producer waits to fill a batch. Every ``append``
            pays it once, so it is small: concurrent appends still share batches.
        fetch_max_wait_ms: How long a consumer's fetch waits at the tail for new records.
            The sequencer, the outcome listener and the index consumer are all on the
            append path; the test broker answers a waiting fetch only at fractions of this
            interval, so it is short (aiokafka's 500 ms default makes appends take ~250 ms).
        max_batch_bytes: Largest record batch the producer builds; the sequencer writes a
            command's events as one batch (so they land atomically), hence it bounds one
            append's encoded size.
        session_timeout_ms: The sequencer group's session timeout; a crashed sequencer's
            partitions move to another member after this long. The broker holds a new
            group's first join for half of it (at least 1 s).
        heartbeat_interval_ms: The sequencer's heartbeat interval (below a third of the
            session timeout).
        retry: How sends are retried before ``BrokerUnavailable``.
    """

    request_timeout: float = 5.0
    linger_ms: int = 2
    fetch_max_wait_ms: int = 10
    max_batch_bytes: int = 8 << 20
    session_timeout_ms: int = 4000
    heartbeat_interval_ms: int = 1000
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {self.request_timeout}")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a third "
                f"of session_timeout_ms ({self.session_timeout_ms})"
            )

    @property
    def request_timeout_ms(self) -> int:
        return max(1, round(self.request_timeout * 1000))

    def producer(self, bootstrap: str, client_id: str, *, linger_ms: int | None = None) -> Any:
        """An unstarted producer: ``acks=all``, no idempotence (the test broker lacks it)."""
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=self.linger_ms if linger_ms is None else linger_ms,
            max_batch_size=self.max_batch_bytes,
            max_request_size=self.max_batch_bytes + (1 << 20),
            request_timeout_ms=self.request_timeout_ms,
            retry_backoff_ms=100,
        )

    def consumer(self, bootstrap: str, client_id: str, **options: Any) -> Any:
        """An unstarted consumer tuned for tailing: short fetch wait, large fetches.

        A group member's requests include the join, which the broker may hold for a
        whole session timeout: its request timeout is longer than that.
        """
        request_timeout_ms = max(self.request_timeout_ms, self.fetch_max_wait_ms + 1000)
        if "group_id" in options:
            request_timeout_ms = max(request_timeout_ms, self.session_timeout_ms + 5000)
        return AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=self.max_batch_bytes + (1 << 20),
            fetch_max_bytes=max(52428800, self.max_batch_bytes + (1 << 20)),
            request_timeout_ms=request_timeout_ms,
            **options,
        )


_STOP_TIMEOUT = 10.0


async def stop_quietly(client: Any, name: str) -> None:
    """Stop an aiokafka client, for at most 10 seconds, whatever the broker does.

    aiokafka's ``stop()`` may raise the ``CancelledError`` of a task it cancelled itself
    (its fetcher's, say) or a broker error when the broker is away; neither may escape a
    close. A cancellation of the calling task itself still propagates.
    """
    try:
        with anyio.move_on_after(_STOP_TIMEOUT):
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.debug("stopping %s raised aiokafka's own CancelledError", name)
    except Exception as exc:
        logger.warning("stopping %s failed: %s", name, describe(exc))


class StallWatch:
    """Re-seeks a consumer's partitions that sit below the high watermark without moving.

    Seen on the test broker with S3 storage after a restart: a long-lived consumer's fetches
    for a partition come back empty although its high watermark is ahead, until the
    partition is seeked (which resets aiokafka's fetch state for it). Checked at most once
    per ``interval`` seconds; a partition that has not moved between two checks while
    records wait is seeked to where it is.
    """

    def __init__(self, consumer: Any, name: str, interval: float = 1.0) -> None:
        self._consumer = consumer
        self._name = name
        self._interval = interval
        self._last_check = time.monotonic()
        self._seen: dict[Any, int] = {}

    async def check(self) -> None:
        now = time.monotonic()
        if now - self._last_check < self._interval:
            return
        self._last_check = now
        consumer = self._consumer
        paused = consumer.paused()
        for tp in consumer.assignment():
            if tp in paused:
                continue  # not fetched on purpose (the index feed's local partitions)
            highwater = consumer.highwater(tp)
            position = None
            with anyio.move_on_after(self._interval):
                try:
                    position = await consumer.position(tp)
                except Exception:  # the partition moved away, or the broker is away
                    position = None
            if position is None or highwater is None:
                continue
            if position < highwater and self._seen.get(tp) == position:
                logger.info(
                    "%s: partition %s stalled at offset %d below high watermark %d; re-seeking",
                    self._name,
                    tp.partition,
                    position,
                    highwater,
                )
                consumer.seek(tp, position)
            self._seen[tp] = position


def is_host_port(address: str) -> bool:
    """Whether ``address`` reads as ``HOST:PORT`` (a non-empty host, a numeric port)."""
    host, sep, port = address.rpartition(":")
    return bool(host and sep and port.isdigit())


def describe(exc: BaseException) -> str:
    """``ErrorType: message`` of a driver error, for the problem text of our errors."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else text or name


def retriable(exc: BaseException) -> bool:
    """Whether trying again may help: the broker was unreachable, slow, or said so."""
    if isinstance(exc, UNREACHABLE):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


async def with_retry(
    policy: RetryPolicy, bootstrap: str, what: str, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run ``attempt`` until it succeeds, retrying retriable broker errors per ``policy``.

    Raises:
        BrokerUnavailable: every attempt failed with a retriable error (names the address).
        KafkaError: a non-retriable driver error, at once.
    """
    for n in range(1, policy.attempts + 1):
        try:
            return await attempt()
        except Exception as exc:
            if not retriable(exc):
                raise
            if n == policy.attempts:
                raise BrokerUnavailable(
                    bootstrap, f"{what} failed {n} times, last with {describe(exc)}"
                ) from exc
            delay = policy.delay(n)
            logger.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1f s",
                what,
                n,
                policy.attempts,
                describe(exc),
                delay,
            )
            await anyio.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
