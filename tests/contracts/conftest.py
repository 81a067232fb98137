"""The backends every contract suite runs against.

Each entry opens a fresh, empty log. The Kafka backend joins this list when it exists; the
suite itself does not change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from eventstore import EmbeddedEventLog
from eventstore.port import EventLog

LogFactory = Callable[..., AbstractAsyncContextManager[EventLog]]


def _embedded(tmp_path: Path) -> LogFactory:
    counter = iter(range(1_000_000))

    def make(**options: object) -> AbstractAsyncContextManager[EventLog]:
        return EmbeddedEventLog(tmp_path / f"log-{next(counter)}.db", **options)  # type: ignore[arg-type]

    return make


BACKENDS = {"embedded": _embedded}


@pytest.fixture(params=sorted(BACKENDS))
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> LogFactory:
    """Factory of fresh logs of the backend under test; call it with backend options."""
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
async def log(make_log: LogFactory) -> AsyncIterator[EventLog]:
    """A fresh, open log of the backend under test."""
    async with make_log() as opened:
        yield opened
