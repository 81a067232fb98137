"""Holding a thread index from another thread, as a read in a worker thread does."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from eventstore.kafka._index import ThreadIndex


@contextlib.contextmanager
def held_by_another_thread(index: ThreadIndex) -> Iterator[None]:
    """Hold ``index``'s lock from another thread for the ``with`` block."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with index._lock:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        worker.join()
