"""Makes the Kafka broker fixtures of ``tests/kafka/fixtures.py`` available under tests/kafka.

To use them in other directories too (the contract suite), register the module once in the
root ``tests/conftest.py`` with ``pytest_plugins = ["tests.kafka.fixtures"]`` and delete the
import below.
"""

from tests.kafka.fixtures import (
    durable_kafka_broker,
    kafka_broker,
    kafka_topic,
    make_kafka_broker,
    moto_s3,
    tansu_binary,
)

__all__ = [
    "durable_kafka_broker",
    "kafka_broker",
    "kafka_topic",
    "make_kafka_broker",
    "moto_s3",
    "tansu_binary",
]
