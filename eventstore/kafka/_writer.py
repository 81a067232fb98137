"""The index writer: the thread index's write transactions, in a process of their own.

CPython runs the Python of one process on one core at a time, and on the Kafka command
path that core is the limit: the client's appends, the sequencer's rounds, aiokafka and
the index's ingest all take turns on it (``bench/RESULTS.md``). Ingesting is a fifth of
that work and needs nothing from the rest but the records, so a log whose index is a
file hands it to a child process (:func:`main`, given the file's path), which
peeks each record, writes the rows and commits, on the machine's other core. The log
keeps its own connection to the file for every read (SQLite's WAL lets readers in
another process see each commit at once and never wait for the writer).

The child is the log's: it starts when the log opens, ends when the log closes, and
exits by itself when its standard input closes (so it does not outlive a killed log).
It may die (killed, out of memory): the next ingest raises :class:`IndexWriterFailed`,
and the index consumer stops as it does for any index failure.

Frames on the child's standard input and output, little-endian: one kind byte, a u32
body length, the body.

- ``I`` (to the child): records to ingest in one transaction: u32 count n, n u32
  partitions, n i64 offsets, n u32 value lengths, then the values.
- ``K`` (reply): the events stored: for each, u32 partition, i64 offset, i64 position
  (records ingested before, or redelivered, are not in it).
- ``E`` (reply): the ingest failed and stored nothing: the error's class name, a newline,
  its message (UTF-8).
- ``R`` (from the child, once, empty): the index is open, requests may come; or an
  ``E`` frame, and the child exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from eventstore.codec import Codec
from eventstore.errors import EventStoreError, LogClosed, StorageError
from eventstore.kafka._index import ThreadIndex

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("<cI")
_PIPE_BYTES = 1 << 20
_STORED = struct.Struct("<Iqq")
_CHILD = "from eventstore.kafka._writer import main; main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: Seconds a closing log waits for its writer to finish and exit before killing it.
_EXIT_TIMEOUT = 10.0

Stored = tuple[int, int, int]
"""An event the writer stored: its partition, its offset, and its position in the index."""


class IndexWriterFailed(StorageError):
    """The index writer process failed an ingest, or is gone.

    ``kind`` is the class name of the error in the child (``IndexConflict``,
    ``CorruptEvent``, ...) or ``exited`` when the process ended; the message is the
    child's own.
    """

    def __init__(self, location: str, kind: str, detail: str) -> None:
        self.location = location
        self.kind = kind
        self.detail = detail
        super().__init__(f"the index writer of {location!r} failed: {kind}: {detail}")


def encode_records(records: Sequence[tuple[int, int, bytes]]) -> bytes:
    """An ``I`` frame of ``records`` (``(partition, offset, value)``)."""
    n = len(records)
    partitions = [r[0] for r in records]
    offsets = [r[1] for r in records]
    values = [r[2] for r in records]
    head = struct.pack(f"<I{n}I{n}q{n}I", n, *partitions, *offsets, *map(len, values))
    body_length = len(head) + sum(map(len, values))
    return b"".join((_FRAME.pack(b"I", body_length), head, *values))


def decode_records(body: bytes) -> list[tuple[int, int, bytes]]:
    """The records of an ``I`` frame's body.

    Raises:
        ValueError: the body is not such a frame (cut short or with bytes left over).
    """
    (n,) = struct.unpack_from("<I", body)
    fields = struct.unpack_from(f"<{n}I{n}q{n}I", body, 4)
    pos = 4 + 16 * n
    records = []
    for i in range(n):
        end = pos + fields[2 * n + i]
        if end > len(body):
            raise ValueError(f"record {i} of {n} runs past the end of the frame")
        records.append((fields[i], fields[n + i], body[pos:end]))
        pos = end
    if pos != len(body):
        raise ValueError(f"{len(body) - pos} bytes after the last record")
    return records


def _write_frame(out: BinaryIO, kind: bytes, body: bytes) -> None:
    out.write(_FRAME.pack(kind, len(body)))
    out.write(body)
    out.flush()


def _error_body(exc: BaseException) -> bytes:
    return f"{type(exc).__name__}\n{exc}".encode()


def _widen(pipe: BinaryIO) -> None:
    """Give the pipe a buffer that holds a whole request (Linux: 64 KiB by default, and the
    parent's event loop then writes a frame of a few hundred KiB in many turns, each a
    wake-up of this process); where that is not possible, the default does."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    try:
        fcntl.fcntl(pipe.fileno(), set_size, _PIPE_BYTES)
    except (OSError, ValueError):  # not a pipe, or more than the system allows
        pass


def serve(path: str, source: BinaryIO, sink: BinaryIO) -> int:
    """The child's loop: open the index at ``path``, then answer ``I`` frames from
    ``source`` on ``sink`` until ``source`` ends. Returns the exit status."""
    _widen(source)
    try:
        index = ThreadIndex(path, Codec())
    except EventStoreError as exc:
        _write_frame(sink, b"E", _error_body(exc))
        return 1
    _write_frame(sink, b"R", b"")
    try:
        while True:
            head = source.read(_FRAME.size)
            if not head:
                return 0  # the log closed our input: it is done with us
            if len(head) < _FRAME.size:
                return 1
            kind, length = _FRAME.unpack(head)
            body = source.read(length)
            if kind != b"I" or len(body) != length:
                return 1
            try:
                stored = index.ingest(decode_records(body))
            except (EventStoreError, ValueError) as exc:
                _write_frame(sink, b"E", _error_body(exc))
                continue
            _write_frame(
                sink,
                b"K",
                b"".join([_STORED.pack(e.partition, e.offset, e.position) for e in stored]),
            )
    finally:
        index.close()


class Reply:
    """A submitted ingest's answer, once read (``kind`` None until then)."""

    __slots__ = ("body", "error", "kind")

    def __init__(self) -> None:
        self.kind: bytes | None = None
        self.body = b""
        self.error: IndexWriterFailed | None = None

    def answer(self, kind: bytes, body: bytes) -> None:
        self.kind, self.body = kind, body

    def fail(self, error: IndexWriterFailed) -> None:
        """No answer will come: the child is gone."""
        self.kind, self.error = b"E", error


class IndexWriter:
    """The parent's end of an index writer process. See the module docstring.

    Args:
        path: The index file (it must exist and be a thread index: the log opens it first).

    Ingests are sent in the order submitted and answered in that order; a frame in
    flight is sent and its answer read even if the caller is cancelled, so the frames
    never fall out of step.
    """

    def __init__(self, path: Path | str) -> None:
        self.location = str(path)
        self._process: anyio.abc.Process | None = None
        self._replies: BufferedByteReceiveStream | None = None
        self._reading: anyio.abc.Process | None = None  # the child whose replies are read
        self._send_lock = anyio.Lock()
        self._receive_lock = anyio.Lock()
        self._unanswered: deque[Reply] = deque()
        self._failed: IndexWriterFailed | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the child and wait until it has the index open.

        Raises:
            IndexWriterFailed: the child could not open the index, or did not start.
        """
        env = dict(os.environ)  # and the directory this package is in, wherever that is
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        self._process = await anyio.open_process(
            # not ``-m``: the package imports this module before runpy would run it
            [sys.executable, "-c", _CHILD, self.location],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the child logs nothing on its own; Python's errors show up here
            env=env,
        )
        assert self._process.stdout is not None  # asked for above
        self._replies = BufferedByteReceiveStream(self._process.stdout)
        self._reading = self._process
        kind, body = await self._frame(self._process)
        if kind != b"R":
            raise self._failure(kind, body)
        logger.info("index writer process %d writes %s", self._process.pid, self.location)

    async def ingest(self, records: Sequence[tuple[int, int, bytes]]) -> list[Stored]:
        """Ingest ``records`` in one transaction of the child's: :meth:`submit`, then
        :meth:`result`.

        Returns:
            ``(partition, offset, position)`` of each event stored, in ingest order.

        Raises:
            IndexWriterFailed: the ingest failed (nothing of it stored), or the child is
                gone.
            LogClosed: the writer was closed.
        """
        return await self.result(await self.submit(records))

    async def submit(self, records: Sequence[tuple[int, int, bytes]]) -> Reply:
        """Send ``records`` to the child (ingested in the order submitted, one transaction
        each); :meth:`result` waits for the outcome. Submitting the next batch before the
        last one's result keeps the child busy while this process does other work.

        Raises:
            IndexWriterFailed: the child is gone.
            LogClosed: the writer was closed.
        """
        frame = encode_records(records)
        async with self._send_lock:
            if self._failed is not None:
                raise self._failed
            process = self._process
            if process is None or process.stdin is None:
                raise LogClosed(f"the index writer of {self.location!r}", "closed")
            with anyio.CancelScope(shield=True):  # a frame is sent whole or not at all
                try:
                    await process.stdin.send(frame)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    raise await self._gone(process) from None
            reply = Reply()
            self._unanswered.append(reply)
        return reply

    async def result(self, reply: Reply) -> list[Stored]:
        """Wait for the child's answer to a :meth:`submit` (whoever reads the replies
        hands each to its request, in order).

        Returns and raises as :meth:`ingest`.
        """
        with anyio.CancelScope(shield=True):  # the replies must not fall out of step
            async with self._receive_lock:
                while reply.kind is None:
                    try:
                        await self._take_reply()
                    except IndexWriterFailed:
                        break  # every unanswered request, this one too, holds the failure
        if reply.error is not None:
            raise reply.error
        if reply.kind != b"K":
            raise self._failure(reply.kind or b"", reply.body)
        body = reply.body
        return [_STORED.unpack_from(body, i) for i in range(0, len(body), _STORED.size)]

    async def _take_reply(self) -> None:
        """Read one reply and give it to the oldest unanswered request (held with the
        receive lock); if the child is gone, every unanswered request gets the failure."""
        process = self._reading
        assert process is not None  # started
        try:
            kind, body = await self._frame(process)
        except IndexWriterFailed as exc:
            while self._unanswered:
                self._unanswered.popleft().fail(exc)
            raise
        self._unanswered.popleft().answer(kind, body)

    async def _frame(self, process: anyio.abc.Process) -> tuple[bytes, bytes]:
        assert self._replies is not None  # started
        if self._failed is not None:
            raise self._failed
        try:
            kind, length = _FRAME.unpack(await self._replies.receive_exactly(_FRAME.size))
            body = await self._replies.receive_exactly(length) if length else b""
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
            raise await self._gone(process) from None
        return kind, body

    async def _gone(self, process: anyio.abc.Process) -> IndexWriterFailed:
        """The failure to raise, for good, once the child has ended."""
        with anyio.move_on_after(_EXIT_TIMEOUT):
            await process.wait()
        self._failed = IndexWriterFailed(
            self.location,
            "exited",
            f"process {process.pid} ended (exit status {process.returncode})",
        )
        return self._failed

    def _failure(self, kind: bytes, body: bytes) -> IndexWriterFailed:
        if kind != b"E":
            return IndexWriterFailed(self.location, "protocol", f"unexpected frame {kind!r}")
        name, _, detail = body.decode(errors="replace").partition("\n")
        return IndexWriterFailed(self.location, name, detail)

    async def aclose(self) -> None:
        """Wait for the answers still due, close the child's input and wait for it to exit
        (killing it after ``_EXIT_TIMEOUT`` s). Idempotent."""
        with anyio.CancelScope(shield=True):
            async with self._send_lock:  # nothing more is sent
                process, self._process = self._process, None
            if process is None:
                return
            async with self._receive_lock:  # submitted, never awaited: read them anyway
                with contextlib.suppress(IndexWriterFailed):
                    while self._unanswered:
                        await self._take_reply()
            if process.stdin is not None:
                await process.stdin.aclose()
            with anyio.move_on_after(_EXIT_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                logger.warning("index writer process %d did not exit; killing it", process.pid)
                process.kill()
                await process.wait()
            await process.aclose()


def main() -> None:
    """The child's entry point: ``serve`` the index file named by the first argument."""
    sys.exit(serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer))
