"""The index writer process (``eventstore/kafka/_writer.py``): a real child process writing a
real index file, read back through the parent's own connection; no broker needed."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore.codec import Codec
from eventstore.errors import LogClosed
from eventstore.kafka import KafkaEventLog
from eventstore.kafka._index import ThreadIndex
from eventstore.kafka._writer import IndexWriter, IndexWriterFailed, decode_records, encode_records
from tests.kafka.test_index import CODEC, interleaved, record

pytestmark = pytest.mark.anyio


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[tuple[IndexWriter, ThreadIndex]]:
    path = tmp_path / "index.db"
    reader = ThreadIndex(path, CODEC)  # the log opens (and creates) the file first
    writer = IndexWriter(path)
    await writer.start()
    try:
        yield writer, reader
    finally:
        await writer.aclose()
        reader.close()


def test_request_frames_carry_the_records_exactly() -> None:
    records = [(0, 0, b""), (7, 2**40, b"x" * 300), (65535, 3, bytes(range(256)))]
    frame = encode_records(records)
    assert frame[:1] == b"I" and int.from_bytes(frame[1:5], "little") == len(frame) - 5
    assert decode_records(frame[5:]) == records
    assert decode_records(encode_records([])[5:]) == []


def test_a_request_cut_short_or_too_long_is_refused() -> None:
    body = encode_records([(0, 0, b"abc"), (0, 1, b"defg")])[5:]
    with pytest.raises(ValueError, match="record 1 of 2 runs past the end"):
        decode_records(body[:-1])
    with pytest.raises(ValueError, match="2 bytes after the last record"):
        decode_records(body + b"..")


async def test_the_child_ingests_and_the_parent_reads_its_commits(
    writer: tuple[IndexWriter, ThreadIndex],
) -> None:
    w, reader = writer
    assert w.pid is not None and w.pid != os.getpid()
    stored = await w.ingest(interleaved())
    assert stored == [(0, 0, 1), (1, 0, 2), (1, 1, 3), (0, 1, 4), (0, 2, 5), (1, 2, 6)]
    assert [e.seq for e in reader.read_thread("a")] == [1, 2, 3]
    assert reader.checkpoints() == {0: 3, 1: 3}
    assert await w.ingest(interleaved()) == []  # ingested before: skipped
    assert await w.ingest([record(0, 3, "a", 4)]) == [(0, 3, 7)]
    assert reader.head() == 7


async def test_a_failed_ingest_names_the_error_and_the_writer_goes_on(
    writer: tuple[IndexWriter, ThreadIndex],
) -> None:
    w, reader = writer
    await w.ingest([record(0, 0, "a", 1)])
    with pytest.raises(IndexWriterFailed) as info:
        await w.ingest([record(0, 1, "a", 1, event_id="intruder")])
    assert info.value.kind == "IndexConflict"
    assert "seq 1 of thread 'a' is stored as event 'a-1'" in str(info.value)
    assert "'intruder'" in info.value.detail
    assert reader.head() == 1  # nothing of the failed ingest
    assert await w.ingest([record(0, 1, "a", 2)]) == [(0, 1, 2)]


async def test_a_writer_that_died_fails_every_ingest_from_then_on(
    writer: tuple[IndexWriter, ThreadIndex],
) -> None:
    w, _ = writer
    await w.ingest([record(0, 0, "a", 1)])
    assert w.pid is not None
    os.kill(w.pid, signal.SIGKILL)
    for _ in range(2):
        with pytest.raises(
            IndexWriterFailed, match=r"exited: process \d+ ended \(exit status -9\)"
        ):
            await w.ingest([record(0, 1, "a", 2)])


async def test_a_writer_on_a_file_that_is_not_an_index_fails_to_start(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database\n" * 100)
    w = IndexWriter(foreign)
    with pytest.raises(IndexWriterFailed, match="CorruptLog") as info:
        await w.start()
    assert str(foreign) in str(info.value)
    await w.aclose()


async def test_closing_ends_the_child_and_later_ingests_say_closed(
    writer: tuple[IndexWriter, ThreadIndex],
) -> None:
    w, _ = writer
    process = w._process
    assert process is not None
    await w.aclose()
    await w.aclose()  # idempotent
    assert process.returncode == 0  # it saw its input end and left by itself
    with pytest.raises(LogClosed):
        await w.ingest([record(0, 0, "a", 1)])


def test_a_kafka_log_takes_a_writer_only_where_one_can_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs an index file"):
        KafkaEventLog("127.0.0.1:9", index_writer=True)
    other = Codec(dataclasses.replace(CODEC.schemas))  # the same schemas, not the shipped set
    with pytest.raises(ValueError, match="shipped schemas"):
        KafkaEventLog("127.0.0.1:9", tmp_path / "i.db", codec=other, index_writer=True)
    assert KafkaEventLog("127.0.0.1:9", tmp_path / "i.db")._use_writer
    assert not KafkaEventLog("127.0.0.1:9")._use_writer
    assert not KafkaEventLog("127.0.0.1:9", tmp_path / "i.db", codec=other)._use_writer
    assert not KafkaEventLog("127.0.0.1:9", tmp_path / "i.db", index_writer=False)._use_writer
