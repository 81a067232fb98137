"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")

# The Kafka broker fixtures (``kafka_broker`` and friends) serve tests/kafka and the
# contract suite alike.
pytest_plugins = ["tests.kafka.fixtures"]


@pytest.fixture
def anyio_backend() -> str:
    """agentlog runs on anyio's asyncio backend (aiokafka and async psycopg need it)."""
    return "asyncio"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path for an embedded log."""
    return tmp_path / "log" / "agentlog.db"
