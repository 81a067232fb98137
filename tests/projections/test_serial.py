"""Snapshot encoding details the store contract does not see: per-thread compressors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from projections import MergeRules, ThreadState
from projections.serial import ChunkCache, decode, encode
from tests.contracts.test_snapshot_store import folded

RULES = MergeRules()


def test_snapshots_encoded_in_many_threads_at_once_decode_to_their_states() -> None:
    states = [folded(f"t{i}") for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        snapshots = list(pool.map(lambda s: encode(s, RULES.digest), states * 5))
    for state, snapshot in zip(states * 5, snapshots, strict=True):
        assert decode(snapshot) == state


def test_a_cleared_chunk_cache_encodes_and_decodes_alike() -> None:
    cache = ChunkCache()
    state = folded("t")
    first = encode(state, RULES.digest, cache)
    cache.clear()
    assert first.chunks and not any(d in cache for d in first.chunks)
    again = encode(state, RULES.digest, cache)
    assert again == first
    assert decode(again, cache) == state and all(d in cache for d in first.chunks)
    assert decode(encode(ThreadState(thread_id="e"), RULES.digest)) == ThreadState(thread_id="e")
