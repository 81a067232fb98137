"""``StateCache``: a bounded read cache of hot thread states.

At most ``max_threads`` states, each for at most ``ttl`` seconds, least recently used out
first. A read names the version it needs (its read-your-writes position): a cached state
older than that is never served. The clock is injected (``time.monotonic`` by default).
Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from projections.state import ThreadState

DEFAULT_MAX_THREADS = 1000
DEFAULT_TTL = 300.0


class StateCache:
    """Hot thread states, bounded by count and age.

    Args:
        max_threads: Most states kept (at least 1).
        ttl: Seconds a state may be served after it was put.
        clock: Monotonic seconds.

    Raises:
        ValueError: ``max_threads < 1`` or ``ttl <= 0``.
    """

    def __init__(
        self,
        max_threads: int = DEFAULT_MAX_THREADS,
        ttl: float = DEFAULT_TTL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_threads < 1:
            raise ValueError(f"cache max_threads must be at least 1, got {max_threads}")
        if ttl <= 0:
            raise ValueError(f"cache ttl must be positive, got {ttl}")
        self.max_threads = max_threads
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, ThreadState]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, thread_id: str, min_version: int = 0) -> ThreadState | None:
        """The cached state of the thread if it is fresh and at least ``min_version``."""
        entry = self._entries.get(thread_id)
        if entry is None:
            self.misses += 1
            return None
        stored_at, state = entry
        if self._clock() - stored_at > self.ttl:
            del self._entries[thread_id]
            self.misses += 1
            return None
        if state.version < min_version:
            self.misses += 1
            return None
        self._entries.move_to_end(thread_id)
        self.hits += 1
        return state

    def put(self, state: ThreadState) -> None:
        """Cache ``state`` unless a newer state of its thread is cached already."""
        current = self._entries.get(state.thread_id)
        if current is not None and current[1].version > state.version:
            return
        self._entries[state.thread_id] = (self._clock(), state)
        self._entries.move_to_end(state.thread_id)
        while len(self._entries) > self.max_threads:
            self._entries.popitem(last=False)

    def drop(self, thread_id: str | None = None) -> None:
        """Forget one thread's state, or all."""
        if thread_id is None:
            self._entries.clear()
        else:
            self._entries.pop(thread_id, None)
