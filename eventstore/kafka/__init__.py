"""The Kafka backend: ``KafkaEventLog``, its topics, its local thread index.

See ``docs/kafka.md`` for the design (command path, sequencer, thread index, positions).
"""

from eventstore.kafka._client import KafkaOptions, RetryPolicy, is_host_port
from eventstore.kafka._feed import CatchUpStalled
from eventstore.kafka._index import IndexConflict, Located, ThreadIndex
from eventstore.kafka._topics import (
    KafkaTopology,
    TopicMismatch,
    TopicSetupFailed,
    TopicSpec,
    ensure_topics,
)
from eventstore.kafka._writer import IndexWriterFailed
from eventstore.kafka.log import (
    AppendTimedOut,
    KafkaEventLog,
    SequencerStatus,
    default_index_path,
)

__all__ = [
    "AppendTimedOut",
    "CatchUpStalled",
    "IndexConflict",
    "IndexWriterFailed",
    "KafkaEventLog",
    "KafkaOptions",
    "KafkaTopology",
    "Located",
    "RetryPolicy",
    "SequencerStatus",
    "ThreadIndex",
    "TopicMismatch",
    "TopicSetupFailed",
    "TopicSpec",
    "default_index_path",
    "ensure_topics",
    "is_host_port",
]
