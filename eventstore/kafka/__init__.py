"""The Kafka backend (in progress: topics)."""

from eventstore.kafka._topics import (
    KafkaTopology,
    TopicMismatch,
    TopicSetupFailed,
    TopicSpec,
    ensure_topics,
)

__all__ = ["KafkaTopology", "TopicMismatch", "TopicSetupFailed", "TopicSpec", "ensure_topics"]
