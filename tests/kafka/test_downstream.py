"""Downstream proof: clients that are not ours read ``PREFIX.threads`` and decode every event
with only the published ``.avsc`` files and fastavro (``docs/downstream.md``).

The module's events are appended once (``written``): every event type, on five threads
spread over all four partitions, with varied envelope fields. Then three readers:

* confluent-kafka (librdkafka 2.16) consumes the topic; each value is decoded by
  :class:`AvscDecoder`, which knows the ``.avsc`` files and fastavro and nothing of
  agentlog's codec;
* Debian's kcat (librdkafka 2.0.2) runs the one-liner of ``docs/downstream.md``, then dumps
  the raw values for the same decoder;
* the Python example of ``docs/downstream.md`` runs as it is printed, in a subprocess.

Each record must be where Kafka's murmur2 partitioner puts its key, at the offset its
append order gives, with the documented headers, and decode to exactly the event appended.
One record is also written a second time, as a producer retry would (by confluent-kafka
with ``partitioner=murmur2_random``, which must put it in its thread's partition): both
copies decode alike, and the example prints the event once.

agentlog only writes: the events (``KafkaEventLog``) and the retry's copy (``Codec``); and
``from_avro`` turns a decoded payload back into its class, to compare it with the sample.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import confluent_kafka
import fastavro
import fastavro.schema
import pytest

from eventstore.codec import Codec
from eventstore.envelope import NewEvent
from eventstore.kafka import KafkaEventLog, KafkaTopology
from eventstore.payloads import from_avro
from eventstore.schema import SCHEMA_DIR
from tests.contracts.conftest import KAFKA_TEST_OPTIONS
from tests.kafka.broker import TansuBroker
from tests.kafka.test_broker import KCAT_TANSU_FLAGS, kcat_path
from tests.samples import SAMPLES, T0, event

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "downstream.md"
PARTITIONS = 4
#: Kafka's murmur2 puts these in partitions 3, 0, 1, 1 and 2 of 4: all partitions are used,
#: and two threads share one. One key is not ASCII.
THREADS = ("thread-alpha", "thread-beta", "thread-gamma", "thread-ü-epsilon", "t-1")
#: Modules the documented example may import: no agentlog.
EXAMPLE_IMPORTS = {"io", "os", "pathlib", "fastavro", "confluent_kafka"}


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java) partitioner picks for ``key``.

    Written here from the algorithm (MurmurHash2, seed 0x9747B28C, as Kafka's
    ``Utils.murmur2``), so that the check does not rest on a client's own partitioner.
    """
    m = 0x5BD1E995
    h = (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    whole = len(key) - len(key) % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(key[i : i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = key[whole:]
    if rest:
        for j in reversed(range(len(rest))):
            h ^= rest[j] << (8 * j)
        h = (h * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


class AvscDecoder:
    """Decodes record values with the ``.avsc`` files of a folder and fastavro, nothing else."""

    def __init__(self, schema_dir: Path) -> None:
        envelope = fastavro.schema.load_schema(str(schema_dir / "agentlog.Envelope.avsc"))
        assert isinstance(envelope, dict)
        canonical = fastavro.schema.to_parsing_canonical_form(envelope)
        self.fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
        self.schema = fastavro.parse_schema(envelope)
        self.fields = [field["name"] for field in envelope["fields"]]

    def decode(self, value: bytes) -> dict[str, Any]:
        """The envelope in ``value``; its payload as ``(record full name, dict)``."""
        assert value[:2] == b"\xc3\x01", f"no single-object marker: {value[:10].hex()}"
        assert value[2:10] == self.fingerprint, (
            f"fingerprint {value[2:10].hex()}, the .avsc files give {self.fingerprint.hex()}"
        )
        body = io.BytesIO(value[10:])
        datum = fastavro.schemaless_reader(
            body, self.schema, None, return_record_name=True, return_record_name_override=True
        )
        assert body.tell() == len(value) - 10, "bytes left after the envelope"
        assert isinstance(datum, dict)
        return datum


@dataclass(frozen=True, slots=True)
class Appended:
    """One event as appended: its thread, the seq it got, and the event."""

    thread_id: str
    seq: int
    event: NewEvent


@dataclass(frozen=True, slots=True)
class Written:
    """The module's topic and what it holds, by (partition, offset).

    Attributes:
        bootstrap: The broker.
        topic: The threads topic.
        events: The event each record holds.
        duplicate: Where the second copy of one record is (a producer retry's copy).
    """

    bootstrap: str
    topic: str
    events: dict[tuple[int, int], Appended]
    duplicate: tuple[int, int]


def make_events(thread_id: str, types: list[str], n: int) -> list[NewEvent]:
    """Events of ``types`` for ``thread_id``, optional envelope fields set on every other."""
    events = []
    for i, event_type in enumerate(types):
        full = (n + i) % 2 == 0
        events.append(
            event(
                SAMPLES[event_type],
                actor=f"agent-{i % 3}",
                tenant="acme" if thread_id.startswith("thread-") else "default",
                version_vector={"agent-0": n + i, "agent-1": 1} if full else {},
                causation_id=f"cause-{n + i}" if full else None,
                correlation_id=f"turn-{n // 10}" if full else None,
                idempotency_key=f"req-{thread_id}-{i}" if not full else None,
                occurred_at=T0 + timedelta(milliseconds=n + i),
            )
        )
    return events


async def append_all(bootstrap: str, topology: KafkaTopology) -> list[tuple[str, int, NewEvent]]:
    """Append every sample type to every thread, in two appends per thread; in append order."""
    types = sorted(SAMPLES)
    rounds = [types[: len(types) // 2], types[len(types) // 2 :]]
    done: list[tuple[str, int, NewEvent]] = []
    async with KafkaEventLog(
        bootstrap, topology=topology, options=KAFKA_TEST_OPTIONS, outcome_timeout=20.0
    ) as log:
        for part in rounds:
            for thread_id in THREADS:
                events = make_events(thread_id, part, len(done))
                result = await log.append(thread_id, events)
                assert not result.deduplicated
                done += [(thread_id, seq, e) for seq, e in zip(result.seqs, events, strict=True)]
    return done


def produce_copy(bootstrap: str, topic: str, original: Appended) -> tuple[int, int]:
    """Write the record of ``original`` again, as a producer retry would, with
    confluent-kafka's ``murmur2_random`` partitioner; return where it landed."""
    placed: list[tuple[int, int]] = []
    failures: list[object] = []

    def on_delivery(error: object, message: Any) -> None:
        if error is not None:
            failures.append(error)
        else:
            placed.append((message.partition(), message.offset()))

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "acks": "all",
            "enable.idempotence": False,
        }
    )
    new = original.event
    producer.produce(
        topic,
        key=original.thread_id.encode(),
        value=Codec().encode(original.thread_id, original.seq, new),
        headers=[
            ("type", new.type.encode()),
            ("fingerprint", Codec().fingerprint.hex().encode()),
            ("content-type", b"avro/binary"),
        ],
        on_delivery=on_delivery,
    )
    assert producer.flush(15) == 0, "confluent-kafka could not deliver within 15 s"
    assert not failures
    (place,) = placed
    return place


@pytest.fixture(scope="module")
def written(kafka_broker: TansuBroker) -> Written:
    """Every event type on every thread, appended once for the module's tests, and one
    record written twice."""
    topology = KafkaTopology.default(
        partitions=PARTITIONS, prefix=f"downstream-{uuid.uuid4().hex[:10]}"
    )
    topic = topology.threads.name
    done = anyio.run(append_all, kafka_broker.bootstrap, topology, backend="asyncio")
    # The sequencer writes a partition in append order, from offset 0 of a new topic.
    offsets: Counter[int] = Counter()
    events = {}
    for thread_id, seq, new in done:
        partition = murmur2_partition(thread_id.encode(), PARTITIONS)
        events[partition, offsets[partition]] = Appended(thread_id, seq, new)
        offsets[partition] += 1
    assert len(offsets) == PARTITIONS

    original = next(a for a in events.values() if a.thread_id == "thread-gamma")
    duplicate = produce_copy(kafka_broker.bootstrap, topic, original)
    partition = murmur2_partition(original.thread_id.encode(), PARTITIONS)
    assert duplicate == (partition, offsets[partition])
    events[duplicate] = original
    return Written(kafka_broker.bootstrap, topic, events, duplicate)


@pytest.fixture(scope="module")
def decoder() -> AvscDecoder:
    """The decoder of the shipped ``.avsc`` files."""
    return AvscDecoder(SCHEMA_DIR)


def check_record(
    expected: Appended, key: bytes | None, headers: dict[str, bytes], value: bytes, d: AvscDecoder
) -> None:
    """One record holds ``expected``: key, headers, and every field of the decoded value."""
    new = expected.event
    assert key == expected.thread_id.encode()
    assert headers == {
        "type": new.type.encode(),
        "fingerprint": d.fingerprint.hex().encode(),
        "content-type": b"avro/binary",
    }
    envelope = d.decode(value)
    assert list(envelope) == d.fields
    name, payload = envelope.pop("payload")
    assert envelope == {
        "event_id": new.event_id,
        "thread_id": expected.thread_id,
        "tenant": new.tenant,
        "seq": expected.seq,
        "type": new.type,
        "occurred_at": new.occurred_at,
        "actor": new.actor,
        "version_vector": dict(new.version_vector),
        "causation_id": new.causation_id,
        "correlation_id": new.correlation_id,
        "idempotency_key": new.idempotency_key,
    }
    assert name == f"agentlog.{new.type}"
    assert from_avro(name, payload) == new.payload


def test_every_event_type_is_on_every_thread_and_one_record_twice(written: Written) -> None:
    unique = {a.event.event_id: a for a in written.events.values()}
    assert len(unique) == len(written.events) - 1
    assert Counter(a.event.type for a in unique.values()) == {t: len(THREADS) for t in SAMPLES}
    seqs = {t: sorted(a.seq for a in unique.values() if a.thread_id == t) for t in THREADS}
    assert seqs == {t: list(range(1, len(SAMPLES) + 1)) for t in THREADS}


# --- confluent-kafka ------------------------------------------------------------------------


def consume(bootstrap: str, topic: str, *, patience: float = 15.0) -> list[Any]:
    """Every record of ``topic``: confluent-kafka reads each partition from its beginning to
    its end (``enable.partition.eof``), with no consumer group (``assign()``)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"downstream-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    records: list[Any] = []
    at_end: set[int] = set()
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(PARTITIONS)
            ]
        )
        deadline = time.monotonic() + patience
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, (
                f"confluent-kafka read {len(records)} records in {patience} s; "
                f"partitions at their end: {sorted(at_end)}"
            )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error, partition = msg.error(), msg.partition()
            assert partition is not None
            if error is not None and error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                at_end.add(partition)
                continue
            assert error is None, error
            at_end.discard(partition)
            records.append(msg)
    finally:
        consumer.close()
    return records


def test_confluent_kafka_decodes_every_event_with_only_the_avsc_files(
    written: Written, decoder: AvscDecoder
) -> None:
    records = consume(written.bootstrap, written.topic)
    found = {(r.partition(), r.offset()): r for r in records}
    assert len(found) == len(records), "a (partition, offset) was delivered twice"
    assert sorted(found) == sorted(written.events)
    for place, record in found.items():
        expected = written.events[place]
        assert record.partition() == murmur2_partition(record.key(), PARTITIONS)
        headers = {name: bytes(value) for name, value in record.headers() or ()}
        check_record(expected, record.key(), headers, record.value(), decoder)


# --- kcat -----------------------------------------------------------------------------------


def doc_block(language: str) -> str:
    """The single ``language`` fenced block of ``docs/downstream.md``."""
    (block,) = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return str(block)


def kcat(bootstrap: str, *args: str) -> bytes:
    """Run kcat against the test broker (see ``KCAT_TANSU_FLAGS``); its stdout."""
    done = subprocess.run(
        [kcat_path(), "-b", bootstrap, *KCAT_TANSU_FLAGS, *args],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def kcat_records(output: bytes) -> Iterator[tuple[int, int, bytes, dict[str, bytes], bytes]]:
    """Parse kcat's ``-f '%p %o %K %S %h\\n%k%s'`` output: (partition, offset, key, headers,
    value) per record; binary safe, as the key and value lengths come first."""
    stream = io.BytesIO(output)
    while line := stream.readline():
        partition, offset, key_size, value_size, headers = line.rstrip(b"\n").split(b" ")
        key = stream.read(int(key_size))
        value = stream.read(int(value_size))
        assert len(value) == int(value_size), "kcat output ends inside a value"
        pairs = (h.split(b"=", 1) for h in headers.split(b","))
        yield int(partition), int(offset), key, {n.decode(): v for n, v in pairs}, value


def test_kcat_sees_every_record_and_its_values_decode(
    written: Written, decoder: AvscDecoder
) -> None:
    (line,) = [ln for ln in doc_block("sh").splitlines() if ln.startswith("kcat ")]
    args = shlex.split(line)[1:]
    assert args[:2] == ["-b", "localhost:9092"]
    # The test broker: its own address and topic, and an absolute start offset because
    # Tansu's ListOffsets v0 answer (what kcat's librdkafka 2.0.2 uses here) has no offsets.
    args = [{"agentlog.threads": written.topic, "beginning": "0"}.get(a, a) for a in args[2:]]
    listing = kcat(written.bootstrap, *args).decode().splitlines()
    pattern = re.compile(r"partition (\d+) offset (\d+) key (.*) headers (\S+) bytes (\d+)")
    listed = {}
    for row in listing:
        match = pattern.fullmatch(row)
        assert match, f"unexpected kcat line {row!r}"
        partition, offset, key, headers, size = match.groups()
        listed[int(partition), int(offset)] = (key, headers, int(size))
    assert len(listed) == len(listing) == len(written.events)

    binary_safe = "%p %o %K %S %h\n%k%s"
    dump = kcat(
        written.bootstrap, "-C", "-t", written.topic, "-o", "0", "-e", "-q", "-f", binary_safe
    )
    dumped = 0
    for partition, offset, key, headers, value in kcat_records(dump):
        expected = written.events[partition, offset]
        assert partition == murmur2_partition(key, PARTITIONS)
        check_record(expected, key, headers, value, decoder)
        assert listed[partition, offset] == (
            expected.thread_id,
            f"type={expected.event.type},fingerprint={decoder.fingerprint.hex()},"
            "content-type=avro/binary",
            len(value),
        )
        dumped += 1
    assert dumped == len(written.events)


# --- the documented example -----------------------------------------------------------------


def test_the_documented_example_prints_every_event_once(written: Written, tmp_path: Path) -> None:
    code = doc_block("python")
    imported = {
        ((node.module or "") if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == EXAMPLE_IMPORTS
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={
            **os.environ,
            "BOOTSTRAP": written.bootstrap,
            "TOPIC": written.topic,
            "SCHEMA_DIR": str(SCHEMA_DIR),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split(" ") for line in done.stdout.splitlines()]
    printed = {(int(p), int(o)): (t, int(s), ty, e) for p, o, t, s, ty, e in rows}
    assert len(printed) == len(rows)
    assert printed == {  # everything but the second copy of the duplicated record
        place: (a.thread_id, a.seq, a.event.type, a.event.event_id)
        for place, a in written.events.items()
        if place != written.duplicate
    }
    for thread_id in THREADS:  # each thread's events come in seq order
        seqs = [int(s) for _, _, t, s, _, _ in rows if t == thread_id]
        assert seqs == sorted(seqs)
