"""The Kafka backend (in progress): topic layout and set-up, and the local thread index.

See ``docs/kafka.md`` for the design; ``KafkaEventLog`` (command path, sequencer, index
consumer) is still to come.
"""

from eventstore.kafka._index import IndexConflict, ThreadIndex
from eventstore.kafka._topics import (
    KafkaTopology,
    TopicMismatch,
    TopicSetupFailed,
    TopicSpec,
    ensure_topics,
)

__all__ = [
    "IndexConflict",
    "KafkaTopology",
    "ThreadIndex",
    "TopicMismatch",
    "TopicSetupFailed",
    "TopicSpec",
    "ensure_topics",
]
