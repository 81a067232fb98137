"""The Kafka backend's topics: their layout, and creating or checking them on start.

Both topics must have the same partition count, so that a thread's commands and its
events live in the same partition number (see ``docs/kafka.md``). :func:`ensure_topics`
creates the topics that are missing and refuses to run against topics whose partition
count differs from the configured one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

# aiokafka ships no type information (no py.typed): its names are Any here.
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.partitioner import murmur2

from eventstore.errors import BrokerUnavailable, EventStoreError

__all__ = ["KafkaTopology", "TopicMismatch", "TopicSetupFailed", "TopicSpec", "ensure_topics"]

logger = logging.getLogger(__name__)

#: Seconds a cancelled or failed call still gives the admin client to close its connections.
_CLOSE_TIMEOUT = 5.0
#: How often, and how many seconds apart (times the attempt), to look for a topic that
#: another caller created while we were creating it.
_RELIST_ATTEMPTS = 5
_RELIST_DELAY = 0.1
#: Driver errors that mean "the broker could not be reached or did not answer in time".
_UNREACHABLE = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TimeoutError,
    OSError,
)


class TopicMismatch(EventStoreError):
    """A topic exists with a partition count other than the configured one.

    Not retriable: the topic has to be recreated (or the setting changed). Adding
    partitions is no fix: it moves threads to other partitions.
    """

    retriable = False

    def __init__(self, topic: str, expected_partitions: int, found_partitions: int) -> None:
        self.topic = topic
        self.expected_partitions = expected_partitions
        self.found_partitions = found_partitions
        super().__init__(
            f"topic {topic!r} has {found_partitions} partitions, agentlog is configured for "
            f"{expected_partitions}; recreate the topic or set the partition count to "
            f"{found_partitions} (a topic named before it was created, e.g. by a producer, "
            "gets the broker's default partition count)"
        )


class TopicSetupFailed(EventStoreError):
    """The broker refused to create or list the topics, and not for being unreachable."""

    retriable = False

    def __init__(self, topics: tuple[str, ...], problem: str) -> None:
        self.topics = topics
        self.problem = problem
        names = ", ".join(repr(t) for t in topics)
        super().__init__(f"cannot set up Kafka topic {names}: {problem}")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as agentlog wants it.

    Attributes:
        name: The topic's name.
        partitions: Its partition count (at least 1).
        replication: Its replication factor (at least 1).
    """

    name: str
    partitions: int
    replication: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a topic name must not be empty")
        if self.partitions < 1:
            raise ValueError(
                f"topic {self.name!r}: partitions must be at least 1, got {self.partitions}"
            )
        if self.replication < 1:
            raise ValueError(
                f"topic {self.name!r}: replication must be at least 1, got {self.replication}"
            )


@dataclass(frozen=True, slots=True)
class KafkaTopology:
    """The two topics of the Kafka backend.

    Attributes:
        threads: The event topic (written by the sequencer only).
        commands: The append command topic (commands and their outcomes).

    Raises:
        ValueError: The two topics share a name or differ in partition count.
    """

    threads: TopicSpec
    commands: TopicSpec

    def __post_init__(self) -> None:
        if self.threads.name == self.commands.name:
            raise ValueError(
                f"the threads and commands topics must differ, both are {self.threads.name!r}"
            )
        if self.threads.partitions != self.commands.partitions:
            raise ValueError(
                "the threads and commands topics must have the same partition count: "
                f"{self.threads.name!r} has {self.threads.partitions}, "
                f"{self.commands.name!r} has {self.commands.partitions}"
            )

    @classmethod
    def default(
        cls, partitions: int = 8, replication: int = 1, prefix: str = "agentlog"
    ) -> KafkaTopology:
        """The standard layout: ``{prefix}.threads`` and ``{prefix}.commands``.

        Args:
            partitions: Partition count of both topics (at least 1).
            replication: Replication factor of both topics (at least 1).
            prefix: Start of both topic names.

        Returns:
            The topology.

        Raises:
            ValueError: A count is below 1, or the prefix is empty.
        """
        if not prefix:
            raise ValueError("the topic prefix must not be empty")
        return cls(
            threads=TopicSpec(f"{prefix}.threads", partitions, replication),
            commands=TopicSpec(f"{prefix}.commands", partitions, replication),
        )

    @property
    def topics(self) -> tuple[TopicSpec, TopicSpec]:
        """Both topics, threads first."""
        return (self.threads, self.commands)


async def ensure_topics(
    bootstrap: str, topology: KafkaTopology, *, request_timeout: float = 10.0
) -> None:
    """Create the topology's missing topics and check the partition count of existing ones.

    Existing topics are listed with a metadata request for all topics: naming a missing
    topic in a metadata request creates it on brokers that auto-create topics (with their
    default partition count, not ours).

    Args:
        bootstrap: ``host:port`` of one or more brokers, comma-separated.
        topology: The topics to create or check.
        request_timeout: Seconds each request to the broker may take.

    Raises:
        TopicMismatch: A topic exists with another partition count.
        TopicSetupFailed: The broker refused to create a topic (e.g. bad replication).
        BrokerUnavailable: The broker could not be reached or did not answer in time.

    Concurrency and cancellation: safe to call from several processes at once (a topic
    created by another caller between the listing and the creation is checked again).
    Cancelling it leaves any topics already created in place; the admin client is always
    closed, within a few seconds even when cancelled.
    """
    timeout_ms = max(1, round(request_timeout * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        # aiokafka bounds each request, not the connection set-up: bound that too.
        with anyio.fail_after(request_timeout):
            await admin.start()
        await _ensure(admin, topology, timeout_ms)
    except _UNREACHABLE as exc:
        raise BrokerUnavailable(bootstrap, _describe(exc)) from exc
    except KafkaError as exc:
        if exc.retriable:
            raise BrokerUnavailable(bootstrap, _describe(exc)) from exc
        names = tuple(spec.name for spec in topology.topics)
        raise TopicSetupFailed(names, _describe(exc)) from exc
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await admin.close()


async def _ensure(admin: AIOKafkaAdminClient, topology: KafkaTopology, timeout_ms: int) -> None:
    """Create what is missing, then check the rest; ``admin`` is a started admin client."""
    existing = await _partition_counts(admin)
    missing = [spec for spec in topology.topics if spec.name not in existing]
    raced: set[str] = set()
    if missing:
        raced = await _create(admin, missing, timeout_ms)
    for attempt in range(_RELIST_ATTEMPTS):
        if raced <= existing.keys():
            break
        # Created by another caller since we listed; its metadata may lag a moment.
        await anyio.sleep(_RELIST_DELAY * attempt)
        existing = await _partition_counts(admin)
    if not raced <= existing.keys():
        lost = tuple(sorted(raced - existing.keys()))
        raise TopicSetupFailed(lost, "the broker says it exists, but does not list it")
    created = {spec.name for spec in missing} - raced
    for spec in topology.topics:
        if spec.name not in created:
            _check(spec, existing[spec.name])


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    """Every topic on the cluster and its partition count (the request names no topic)."""
    topics: list[Mapping[str, Any]] = await admin.describe_topics(None)
    counts: dict[str, int] = {}
    for topic in topics:
        error_code: int = topic["error_code"]
        if error_code:
            error = for_code(error_code)
            if error is UnknownTopicOrPartitionError:
                continue
            raise error(f"listing topic {topic['topic']!r}")
        counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec], timeout_ms: int) -> set[str]:
    """Create ``specs``; return the names that already existed (another caller won)."""
    response = await admin.create_topics(
        [NewTopic(spec.name, spec.partitions, spec.replication) for spec in specs],
        timeout_ms=timeout_ms,
    )
    by_name = {spec.name: spec for spec in specs}
    raced: set[str] = set()
    for name, error_code, *rest in response.topic_errors:
        message = rest[0] if rest and rest[0] else None
        if not error_code:
            spec = by_name[name]
            logger.info(
                "created Kafka topic %s (%s partitions, replication %s)",
                name,
                spec.partitions,
                spec.replication,
            )
            continue
        error = for_code(error_code)
        if error is TopicAlreadyExistsError:
            logger.info("Kafka topic %s was created concurrently; checking it", name)
            raced.add(name)
            continue
        if error.retriable:
            raise error(f"creating topic {name!r}: {message or error.description}")
        raise TopicSetupFailed((name,), f"{error.message}: {message or error.description}")
    return raced


def _check(spec: TopicSpec, found_partitions: int) -> None:
    """Raise :class:`TopicMismatch` unless the topic has the configured partition count."""
    if found_partitions != spec.partitions:
        raise TopicMismatch(spec.name, spec.partitions, found_partitions)
    logger.info(
        "Kafka topic %s exists with %s partitions, as configured", spec.name, found_partitions
    )


def _describe(exc: BaseException) -> str:
    """``ErrorType: message`` of a driver error, for the problem text of our errors."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else text or name


def partition_of(thread_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``thread_id`` as a key."""
    return (int(murmur2(thread_id.encode())) & 0x7FFFFFFF) % partitions
