"""Snapshot encoding details the store contract does not see: per-thread compressors,
the chunk cache, routing entries decoded by their tag."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import TypeAdapter, ValidationError

from projections import MergeRules, ThreadState
from projections.serial import ChunkCache, decode, encode, from_json, to_json
from projections.state import RoutingRecord
from tests.contracts.test_snapshot_store import folded
from tests.samples import SAMPLES, T0

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


def test_routing_entries_decode_as_their_own_type_and_a_shapeless_one_is_refused() -> None:
    routing = ("routing.Decided", "routing.Escalated", "routing.Feedback")
    records = [
        RoutingRecord(seq=i, event_id=f"e{i}", actor="r", occurred_at=T0, decision=d)
        for i, d in enumerate((SAMPLES[t] for t in routing), start=1)
    ]
    state = ThreadState(thread_id="t", version=3, routing=tuple(records))
    assert decode(encode(state, RULES.digest)).routing == tuple(records)  # from JSON
    assert from_json(to_json(state)) == state  # from plain values
    adapter = TypeAdapter(RoutingRecord)
    assert adapter.validate_python(records[1]) == records[1]  # an instance, by its type
    plain = to_json(state)["routing"][0]
    del plain["decision"]["choice"]  # no field that only one routing type has
    with pytest.raises(ValidationError, match="decision"):
        adapter.validate_python(plain)
