"""Version vectors: the order they define and the lattice operations (join, meet)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.vectors import (
    LOG_CLOCK,
    Order,
    VersionVector,
    compare,
    concurrent,
    descends,
    dominates,
    increment,
    join,
    meet,
    normalized,
)

ACTORS = ("a", "b", "c", "d")
# Small counters over few actors, zero entries included, so equal, ordered and
# concurrent pairs all come up often.
vectors = st.dictionaries(st.sampled_from(ACTORS), st.integers(min_value=0, max_value=3))

MIRROR = {
    Order.EQUAL: Order.EQUAL,
    Order.BEFORE: Order.AFTER,
    Order.AFTER: Order.BEFORE,
    Order.CONCURRENT: Order.CONCURRENT,
}


# --- examples ----------------------------------------------------------------------------


def test_compare_names_each_relation() -> None:
    assert compare({"a": 1}, {"a": 1}) is Order.EQUAL
    assert compare({}, {}) is Order.EQUAL
    assert compare({"a": 1}, {"a": 2}) is Order.BEFORE
    assert compare({"a": 1}, {"a": 1, "b": 1}) is Order.BEFORE
    assert compare({"a": 2, "b": 1}, {"a": 1}) is Order.AFTER
    assert compare({"a": 2}, {"a": 1, "b": 1}) is Order.CONCURRENT
    assert compare({"a": 1}, {"b": 1}) is Order.CONCURRENT


def test_missing_and_zero_entries_count_as_zero() -> None:
    assert compare({"a": 1, "b": 0}, {"a": 1}) is Order.EQUAL
    assert compare({"a": 1}, {"a": 1, "b": 0}) is Order.EQUAL
    assert compare({"b": 0}, {}) is Order.EQUAL
    assert descends({}, {"a": 0})
    assert not dominates({"a": 1, "b": 0}, {"a": 1})


def test_descends_dominates_and_concurrent() -> None:
    assert descends({"a": 2, "b": 1}, {"a": 1})
    assert descends({"a": 1}, {"a": 1})
    assert not descends({"a": 1}, {"b": 1})
    assert dominates({"a": 2}, {"a": 1})
    assert not dominates({"a": 1}, {"a": 1})
    assert not dominates({"a": 1}, {"a": 2})
    assert concurrent({"a": 1}, {"b": 1})
    assert not concurrent({"a": 1}, {"a": 2})


def test_join_takes_the_pointwise_maximum() -> None:
    assert join({"a": 2, "b": 1}, {"a": 1, "c": 3}) == {"a": 2, "b": 1, "c": 3}
    assert join({"a": 0}) == {}
    assert join() == {}


def test_meet_takes_the_pointwise_minimum() -> None:
    assert meet({"a": 2, "b": 1}, {"a": 1, "c": 3}) == {"a": 1}
    assert meet({"a": 2, "b": 0}) == {"a": 2}
    assert meet({"a": 1}, {"b": 1}) == {}
    assert meet() == {}


def test_increment_bumps_one_entry_and_drops_zeros() -> None:
    assert increment({}, "a") == {"a": 1}
    assert increment({"a": 1, "b": 0}, "a") == {"a": 2}
    assert increment({"a": 1}, "b") == {"a": 1, "b": 1}
    vector = {"a": 1}
    increment(vector, "a")
    assert vector == {"a": 1}, "increment returns a copy"


def test_normalized_drops_zero_entries() -> None:
    assert normalized({"a": 0, "b": 2}) == {"b": 2}
    assert normalized({}) == {}


def test_the_log_clock_is_an_actor_no_agent_is_named() -> None:
    assert LOG_CLOCK == "~log"
    assert concurrent({LOG_CLOCK: 3}, {"a": 1})
    assert compare({LOG_CLOCK: 1}, {LOG_CLOCK: 2}) is Order.BEFORE


# --- laws --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(vectors, vectors)
def test_compare_is_antisymmetric(a: VersionVector, b: VersionVector) -> None:
    assert compare(b, a) is MIRROR[compare(a, b)]


@settings(max_examples=200, deadline=None)
@given(vectors, vectors)
def test_compare_agrees_with_descends_dominates_and_concurrent(
    a: VersionVector, b: VersionVector
) -> None:
    order = compare(a, b)
    assert descends(a, b) == (order in (Order.EQUAL, Order.AFTER))
    assert descends(b, a) == (order in (Order.EQUAL, Order.BEFORE))
    assert dominates(a, b) == (descends(a, b) and normalized(a) != normalized(b))
    assert dominates(b, a) == (order is Order.BEFORE)
    assert concurrent(a, b) == (not descends(a, b) and not descends(b, a))
    assert (order is Order.EQUAL) == (normalized(a) == normalized(b))


@settings(max_examples=200, deadline=None)
@given(vectors, vectors, vectors)
def test_dominance_is_transitive(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    if dominates(a, b) and dominates(b, c):
        assert dominates(a, c)
    if descends(a, b) and descends(b, c):
        assert descends(a, c)


@settings(max_examples=200, deadline=None)
@given(vectors, vectors, vectors)
def test_join_is_commutative_associative_and_idempotent(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c)) == join(a, b, c)
    assert join(a, a) == join(a) == normalized(a)


@settings(max_examples=200, deadline=None)
@given(vectors, vectors, vectors)
def test_join_is_the_least_upper_bound(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    top = join(a, b)
    assert descends(top, a)
    assert descends(top, b)
    assert 0 not in top.values()
    if descends(c, a) and descends(c, b):
        assert descends(c, top)


@settings(max_examples=200, deadline=None)
@given(vectors, vectors, vectors)
def test_meet_is_the_greatest_lower_bound(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    bottom = meet(a, b)
    assert descends(a, bottom)
    assert descends(b, bottom)
    assert bottom == meet(b, a)
    assert meet(a, a) == meet(a) == normalized(a)
    assert 0 not in bottom.values()
    if descends(a, c) and descends(b, c):
        assert descends(bottom, c)


@settings(max_examples=200, deadline=None)
@given(vectors, st.sampled_from(ACTORS))
def test_increment_dominates_the_vector_it_came_from(a: VersionVector, actor: str) -> None:
    after = increment(a, actor)
    assert dominates(after, a)
    assert compare(a, after) is Order.BEFORE
    assert after[actor] == a.get(actor, 0) + 1
    assert 0 not in after.values()
    assert {k: v for k, v in after.items() if k != actor} == {
        k: v for k, v in normalized(a).items() if k != actor
    }


@settings(max_examples=200, deadline=None)
@given(vectors)
def test_normalized_drops_zeros_and_nothing_else(a: VersionVector) -> None:
    out = normalized(a)
    assert 0 not in out.values()
    assert out == {k: v for k, v in a.items() if v != 0}
    assert normalized(out) == out


@settings(max_examples=200, deadline=None)
@given(vectors, vectors, st.sampled_from((*ACTORS, "z")))
def test_zero_entries_do_not_change_the_comparison(
    a: VersionVector, b: VersionVector, actor: str
) -> None:
    order = compare(a, b)
    assert compare(normalized(a), b) is order
    assert compare(a, normalized(b)) is order
    if actor not in a:
        assert compare({**a, actor: 0}, b) is order
    if actor not in b:
        assert compare(a, {**b, actor: 0}) is order


def test_negative_counts_compare_the_same_both_ways() -> None:
    assert compare({"a": -1}, {}) is Order.BEFORE
    assert compare({}, {"a": -1}) is Order.AFTER
