"""Memory keys: siblings, the merge policies, merge rules, and order independence."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.envelope import RecordedEvent
from eventstore.payloads import (
    MemoryDelete,
    MemoryMerged,
    MemoryResolved,
    MemorySet,
    Payload,
    ValueKind,
)
from projections.fold import fold
from projections.memory import (
    POLICIES,
    KeyState,
    MergeRules,
    Policy,
    Write,
    WriteSource,
    apply_write,
    maximal,
    resolve,
)
from projections.state import ThreadState
from projections.vectors import increment, join
from tests.samples import T0

KINDS: tuple[ValueKind, ...] = ("value", "counter", "set", "map", "list")


def write(
    event_id: str,
    vector: Mapping[str, int],
    value: Any = None,
    *,
    kind: ValueKind = "value",
    actor: str = "a",
    at: int = 0,
    seq: int = 1,
    raw: str | None = None,
    source: WriteSource = "set",
) -> Write:
    """A write of ``value`` (dumped as JSON; ``raw`` is used as is; neither: a delete)."""
    value_json = raw if raw is not None else (None if value is None else json.dumps(value))
    return Write(
        event_id=event_id,
        seq=seq,
        actor=actor,
        occurred_at=T0 + timedelta(seconds=at),
        vector=vector,
        value_json=value_json,
        kind=kind,
        source=source,
    )


def apply_all(policy: Policy, writes: Iterable[Write], key: str = "k") -> KeyState:
    state: KeyState | None = None
    for w in writes:
        state = apply_write(state, w, key, policy)
    assert state is not None
    return state


def value_of(state: KeyState) -> Any:
    assert state.value_json is not None
    return json.loads(state.value_json)


# --- siblings ----------------------------------------------------------------------------


def test_a_first_write_is_the_value() -> None:
    first = write("e1", {"a": 1}, "x")
    state = apply_write(None, first, "k", "last-write-wins")
    assert state == KeyState(key="k", policy="last-write-wins", siblings=(first,), value_json='"x"')
    assert not state.deleted
    assert state.vector == {"a": 1}


def test_a_write_that_has_seen_the_sibling_replaces_it() -> None:
    first = write("e1", {"a": 1}, 1)
    second = write("e2", {"a": 1, "b": 1}, 2, actor="b")
    state = apply_all("last-write-wins", [first, second])
    assert state.siblings == (second,)
    assert value_of(state) == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_a_duplicate_changes_nothing(policy: Policy) -> None:
    first = write("e1", {"a": 1}, 1)
    other = write("e2", {"b": 1}, 2, actor="b", at=1)
    state = apply_all(policy, [first, other])
    assert apply_write(state, first, "k", policy) is state
    assert apply_write(state, dataclasses.replace(first, seq=9), "k", policy) is state


def test_a_duplicate_of_a_replaced_merge_write_changes_nothing() -> None:
    first = write("e1", {"a": 1}, 1, kind="counter")
    second = write("e2", {"a": 2}, 2, kind="counter", at=1)
    state = apply_all("merge", [first, second])
    assert state.siblings == (second,)
    assert state.history == (first, second)
    assert apply_write(state, first, "k", "merge") is state


@pytest.mark.parametrize("policy", ["last-write-wins", "manual"])
def test_a_stale_write_changes_nothing(policy: Policy) -> None:
    newer = write("e2", {"a": 2}, 2, at=0)
    older = write("e1", {"a": 1}, 1, at=5)  # later clock time, but causally before
    state = apply_write(None, newer, "k", policy)
    assert apply_write(state, older, "k", policy) is state


def test_a_stale_merge_write_only_joins_the_history() -> None:
    newer = write("e2", {"a": 2}, 2, kind="counter", at=0)
    older = write("e1", {"a": 1}, 1, kind="counter", at=5)
    state = apply_write(apply_write(None, newer, "k", "merge"), older, "k", "merge")
    assert state.siblings == (newer,)
    assert value_of(state) == 2
    # The history is the whole set of writes, so it must not depend on arrival order.
    assert state.history == (newer, older)
    assert state == apply_all("merge", [older, newer])


def test_concurrent_writes_become_siblings_in_last_write_wins_order() -> None:
    late = write("e1", {"a": 1}, "late", at=5)
    early = write("e2", {"b": 1}, "early", actor="b", at=1)
    state = apply_all("last-write-wins", [late, early])
    assert state.siblings == (early, late)
    assert state.vector == {"a": 1, "b": 1}


def test_the_vector_of_a_key_joins_its_siblings_vectors() -> None:
    x = write("e1", {"a": 2, "b": 1}, 1)
    y = write("e2", {"a": 1, "c": 1}, 2, actor="c", at=1)
    state = apply_all("manual", [x, y])
    assert state.siblings == (x, y)
    assert state.vector == {"a": 2, "b": 1, "c": 1}


def test_a_write_that_has_seen_every_sibling_settles_them() -> None:
    x = write("e1", {"a": 1}, 1)
    y = write("e2", {"b": 1}, 2, actor="b")
    z = write("e3", {"a": 1, "b": 1, "c": 1}, 3, actor="c")
    assert apply_all("last-write-wins", [x, y, z]).siblings == (z,)


def test_maximal_keeps_the_writes_nothing_dominates_once_each() -> None:
    x = write("e1", {"a": 1}, 1, at=2)
    y = write("e2", {"b": 1}, 2, actor="b", at=1)
    z = write("e3", {"a": 2}, 3, at=0)
    assert maximal([x, y, z, y]) == (z, y)
    assert maximal([]) == ()


def test_resolve_of_one_sibling_is_its_value_whatever_the_policy() -> None:
    only = write("e1", {"a": 1}, [1, 2], kind="set")
    for policy in POLICIES:
        state = resolve("k", policy, (only,))
        assert state.value_json == "[1, 2]"
        assert state.kind == "set"
        assert not state.conflicted


# --- last-write-wins ---------------------------------------------------------------------


def test_last_write_wins_takes_the_latest_time() -> None:
    x = write("e1", {"a": 1}, "x", actor="z", at=2)
    y = write("e2", {"b": 1}, "y", actor="b", at=1, kind="counter")
    state = apply_all("last-write-wins", [x, y])
    assert value_of(state) == "x"
    assert state.kind == "value"
    assert len(state.siblings) == 2
    assert not state.conflicted


def test_last_write_wins_breaks_a_time_tie_by_actor() -> None:
    x = write("e9", {"a": 1}, "x", actor="a")
    y = write("e1", {"b": 1}, "y", actor="b")
    assert value_of(apply_all("last-write-wins", [y, x])) == "y"


def test_last_write_wins_breaks_a_time_and_actor_tie_by_event_id() -> None:
    x = write("e1", {"a": 1}, "x", actor="a")
    y = write("e2", {"b": 1}, "y", actor="a")
    assert value_of(apply_all("last-write-wins", [y, x])) == "y"
    assert x.order_key < y.order_key


def test_under_last_write_wins_a_delete_can_win() -> None:
    update = write("e1", {"a": 1}, "x", at=1)
    delete = write("e2", {"b": 1}, actor="b", at=2, source="delete")
    state = apply_all("last-write-wins", [update, delete])
    assert state.value_json is None
    assert state.deleted


# --- manual ------------------------------------------------------------------------------


def test_manual_keeps_concurrent_writes_in_conflict_until_resolved() -> None:
    x = write("e1", {"a": 1}, {"t": 1}, at=1, kind="map")
    y = write("e2", {"b": 1}, "y", actor="b", at=2)
    state = apply_all("manual", [x, y])
    assert state.conflicted
    assert state.value_json is None
    assert not state.deleted
    assert state.siblings == (x, y)
    assert state.kind == "value"

    partial = write("e3", {"a": 2}, "x2", at=3)
    state = apply_write(state, partial, "k", "manual")
    assert state.conflicted, "a write that has not seen every sibling does not settle them"
    assert state.siblings == (y, partial)

    resolved = write(
        "e4", increment(join(y.vector, partial.vector), "c"), "y", actor="c", source="resolved"
    )
    state = apply_write(state, resolved, "k", "manual")
    assert not state.conflicted
    assert state.siblings == (resolved,)
    assert value_of(state) == "y"


def test_the_conflict_id_names_the_set_of_siblings() -> None:
    x = write("e1", {"a": 1}, "x")
    y = write("e2", {"b": 1}, "y", actor="b")
    z = write("e3", {"c": 1}, "z", actor="c")
    one = apply_all("manual", [x, y])
    assert one.conflict_id == apply_all("manual", [y, x]).conflict_id
    assert len(one.conflict_id) == 32
    assert one.conflict_id != apply_all("manual", [x, y, z]).conflict_id
    assert one.conflict_id != apply_all("manual", [x, y], key="other").conflict_id


# --- merge -------------------------------------------------------------------------------


def _three_way(kind: ValueKind, base: Any, left: Any, right: Any) -> Any:
    """Merge ``left`` (a's, earlier) and ``right`` (b's, later), both written over ``base``."""
    writes = [
        write("e0", {"o": 1}, base, kind=kind, actor="o"),
        write("e1", {"o": 1, "a": 1}, left, kind=kind, actor="a", at=1),
        write("e2", {"o": 1, "b": 1}, right, kind=kind, actor="b", at=2),
    ]
    state = apply_all("merge", writes)
    assert len(state.siblings) == 2
    assert state.kind == kind
    assert not state.conflicted
    assert state.history == tuple(writes)
    return value_of(state)


def test_merge_adds_counter_changes_to_the_base() -> None:
    assert _three_way("counter", 1, 3, 6) == 8
    assert _three_way("counter", 10, 7, 12) == 9


def test_merge_of_counters_without_a_base_starts_from_zero() -> None:
    x = write("e1", {"a": 1}, 3, kind="counter")
    y = write("e2", {"b": 1}, 6, kind="counter", actor="b")
    assert value_of(apply_all("merge", [x, y])) == 9


def test_merge_bases_on_the_merge_of_what_every_sibling_had_seen() -> None:
    # two concurrent counters (1 and 2, so 3), then two writes that each saw both
    a1 = write("e1", {"a": 1}, 1, kind="counter")
    b1 = write("e2", {"b": 1}, 2, kind="counter", actor="b")
    c1 = write("e3", {"a": 1, "b": 1, "c": 1}, 13, kind="counter", actor="c")
    d1 = write("e4", {"a": 1, "b": 1, "d": 1}, 5, kind="counter", actor="d")
    state = apply_all("merge", [a1, b1, c1, d1])
    assert state.siblings == (c1, d1)
    assert value_of(state) == 3 + 10 + 2


def test_merge_of_sets_keeps_what_all_kept_and_adds_what_any_added() -> None:
    assert _three_way("set", [1, 2, 3], [2, 3, 4], [1, 2, 3, 5]) == [2, 3, 4, 5]
    # removed by one sibling, kept by the other: removed
    assert _three_way("set", ["x"], [], ["x"]) == []
    # added by one sibling: stays (add-wins), also when the other removed other elements
    assert _three_way("set", ["x", "y"], ["y", "z"], ["x"]) == ["z"]


def test_merge_of_sets_sorts_elements_by_their_json_text() -> None:
    assert _three_way("set", [], [10, "b"], [9, {"k": 1}]) == ["b", 10, 9, {"k": 1}]


def test_merge_of_maps_merges_each_field() -> None:
    base = {"a": 1, "b": 2, "c": 3, "e": 5, "g": 7, "h": 8}
    left = {"a": 10, "b": 2, "e": 5, "f": 1, "g": 7}  # a changed, c and h removed, f added
    right = {"a": 11, "b": 20, "c": 30, "g": 7}  # a, b, c changed, e and h removed
    assert _three_way("map", base, left, right) == {"a": 11, "b": 20, "c": 30, "f": 1, "g": 7}


def test_merge_of_maps_a_change_beats_a_removal_in_either_order() -> None:
    assert _three_way("map", {"x": 1}, {}, {"x": 2}) == {"x": 2}
    assert _three_way("map", {"x": 1}, {"x": 2}, {}) == {"x": 2}
    assert _three_way("map", {"x": 1}, {"x": 1}, {}) == {}


def test_merge_of_lists_keeps_common_base_items_then_each_siblings_new_items() -> None:
    base = ["a", "b", "c"]
    left = ["a", "c", "x1", "x2"]  # removes b, adds two
    right = ["y1", "a", "b", "c"]  # adds one in front
    assert _three_way("list", base, left, right) == ["a", "c", "x1", "x2", "y1"]


def test_merge_of_lists_counts_repeated_items() -> None:
    assert _three_way("list", ["a", "a"], ["a", "a", "a"], ["a"]) == ["a", "a"]
    assert _three_way("list", [], ["x"], ["x"]) == ["x", "x"]


def test_merge_of_lists_orders_siblings_by_time_then_actor() -> None:
    base = write("e0", {"o": 1}, [], kind="list", actor="o")
    by_b = write("e1", {"o": 1, "b": 1}, ["b"], kind="list", actor="b", at=1)
    by_a = write("e2", {"o": 1, "a": 1}, ["a"], kind="list", actor="a", at=1)
    later = write("e3", {"o": 1, "c": 1}, ["c"], kind="list", actor="0", at=2)
    assert value_of(apply_all("merge", [later, by_b, base, by_a])) == ["a", "b", "c"]


def test_merge_of_plain_values_is_last_write_wins() -> None:
    assert _three_way("value", "base", "left", "right") == "right"


def test_merge_of_mixed_kinds_is_last_write_wins() -> None:
    x = write("e1", {"a": 1}, [1], kind="set", at=2)
    y = write("e2", {"b": 1}, 5, kind="counter", actor="b", at=1)
    state = apply_all("merge", [x, y])
    assert value_of(state) == [1]
    assert state.kind == "set"


@pytest.mark.parametrize(
    ("kind", "good", "raw"),
    [
        ("counter", "5", "not json"),
        ("counter", "5", '"3"'),
        ("counter", "5", "true"),
        ("set", "[1]", '{"a": 1}'),
        ("set", "[1]", "[1, 1]"),
        ("map", "{}", "[1]"),
        ("list", "[]", "{}"),
    ],
)
def test_merge_of_a_value_that_does_not_parse_as_its_kind_is_last_write_wins(
    kind: ValueKind, good: str, raw: str
) -> None:
    first = write("e1", {"a": 1}, raw=good, kind=kind)
    bad = write("e2", {"b": 1}, raw=raw, kind=kind, actor="b", at=1)
    state = apply_all("merge", [first, bad])
    assert state.value_json == raw
    assert state.kind == kind
    assert len(state.siblings) == 2


def test_merge_ignores_a_base_of_another_kind_or_a_deleted_base() -> None:
    for base in (
        write("e0", {"o": 1}, "text", actor="o"),
        write("e0", {"o": 1}, actor="o", source="delete"),
        write("e0", {"o": 1}, kind="counter", actor="o", source="resolved"),
        write("e0", {"o": 1}, raw="oops", kind="counter", actor="o"),
    ):
        x = write("e1", {"o": 1, "a": 1}, 3, kind="counter", at=1)
        y = write("e2", {"o": 1, "b": 1}, 6, kind="counter", actor="b", at=2)
        assert value_of(apply_all("merge", [base, x, y])) == 9, base


def test_merge_a_delete_loses_to_a_concurrent_update() -> None:
    update = write("e1", {"a": 1}, 4, kind="counter", at=1)
    delete = write("e2", {"b": 1}, actor="b", at=2, source="delete")
    state = apply_all("merge", [update, delete])
    assert value_of(state) == 4
    assert state.kind == "counter"
    assert state.siblings == (update, delete)


def test_merge_of_concurrent_deletes_is_a_delete() -> None:
    x = write("e1", {"a": 1}, source="delete")
    y = write("e2", {"b": 1}, actor="b", kind="counter", source="merged")
    state = apply_all("merge", [x, y])
    assert state.deleted
    assert state.kind == "counter"


def test_merge_a_delete_does_not_count_in_the_base() -> None:
    base = write("e0", {"o": 1}, 10, kind="counter", actor="o")
    x = write("e1", {"o": 1, "a": 1}, 12, kind="counter", at=1)
    y = write("e2", {"o": 1, "b": 1}, 15, kind="counter", actor="b", at=2)
    gone = write("e3", {"o": 1, "c": 1}, actor="c", at=3, source="delete")
    assert value_of(apply_all("merge", [base, x, y, gone])) == 17


def test_merge_of_writes_with_equal_vectors_bases_on_what_came_before() -> None:
    # One actor writing twice from the same state (two racing commands) gives two writes
    # with the same vector; they are siblings and must merge, not recurse forever.
    base = write("e0", {"a": 1}, 5, kind="counter")
    x = write("e1", {"a": 2}, 6, kind="counter", at=1)
    y = write("e2", {"a": 2}, 7, kind="counter", at=2)
    for order in ([base, x, y], [y, x, base]):
        state = apply_all("merge", order)
        assert state.siblings == (x, y)
        assert value_of(state) == 8
    assert value_of(apply_all("merge", [x, y])) == 13


# --- merge rules -------------------------------------------------------------------------


def test_rules_default_to_last_write_wins() -> None:
    assert MergeRules().policy_for("anything") == "last-write-wins"
    assert MergeRules("manual").policy_for("anything") == "manual"


@pytest.mark.parametrize(
    "rules",
    [
        (("plan.*", "merge"), ("plan.steps", "manual")),
        (("plan.steps", "manual"), ("plan.*", "merge")),
    ],
)
def test_an_exact_key_beats_a_prefix(rules: tuple[tuple[str, Policy], ...]) -> None:
    merge_rules = MergeRules("last-write-wins", rules)
    assert merge_rules.policy_for("plan.steps") == "manual"
    assert merge_rules.policy_for("plan.other") == "merge"
    assert merge_rules.policy_for("plan.steps.1") == "merge"
    assert merge_rules.policy_for("plan") == "last-write-wins"


@pytest.mark.parametrize(
    "rules",
    [
        (("plan.*", "merge"), ("plan.steps.*", "manual"), ("*", "last-write-wins")),
        (("*", "last-write-wins"), ("plan.steps.*", "manual"), ("plan.*", "merge")),
    ],
)
def test_the_longest_prefix_wins(rules: tuple[tuple[str, Policy], ...]) -> None:
    merge_rules = MergeRules("manual", rules)
    assert merge_rules.policy_for("plan.steps.1") == "manual"
    assert merge_rules.policy_for("plan.x") == "merge"
    assert merge_rules.policy_for("other") == "last-write-wins"


def test_policies_stay_right_past_the_remembered_keys() -> None:
    rules = MergeRules("manual", (("plan.*", "merge"), ("count", "last-write-wins")))
    for round_ in range(2):  # the second round asks again, from memory and after it filled
        for i in range(5000):
            assert rules.policy_for(f"plan.{i}") == "merge", (round_, i)
            assert rules.policy_for(f"other.{i}") == "manual", (round_, i)
        assert rules.policy_for("count") == "last-write-wins"
    assert rules == MergeRules("manual", (("plan.*", "merge"), ("count", "last-write-wins")))
    assert hash(rules) == hash(
        MergeRules("manual", (("plan.*", "merge"), ("count", "last-write-wins")))
    )


def test_rules_from_a_mapping() -> None:
    rules = MergeRules.from_mapping({"plan.*": "merge", "count": "merge"}, "manual")
    assert rules == MergeRules("manual", (("count", "merge"), ("plan.*", "merge")))
    assert rules.policy_for("count") == "merge"
    assert rules.policy_for("title") == "manual"


def test_an_unknown_policy_is_refused_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"merge rule 'plan\.\*': unknown policy 'newest'"):
        MergeRules.from_mapping({"plan.*": "newest"})
    with pytest.raises(ValueError, match=r"'\(default\)': unknown policy 'lww'"):
        MergeRules.from_mapping({}, "lww")
    with pytest.raises(ValueError, match="use one of last-write-wins, merge, manual"):
        MergeRules(rules=(("k", "mrege"),))  # type: ignore[arg-type]


def test_the_rules_digest_is_stable_and_tells_rules_apart() -> None:
    rules = MergeRules.from_mapping({"plan.*": "merge", "count": "merge"})
    # Snapshots are kept under this digest: it must not change between runs or versions.
    assert MergeRules().digest == "4f4a29e6b105befb"
    assert rules.digest == MergeRules.from_mapping({"count": "merge", "plan.*": "merge"}).digest
    others = {
        MergeRules().digest,
        MergeRules("manual").digest,
        rules.digest,
        MergeRules.from_mapping({"plan.*": "manual", "count": "merge"}).digest,
        MergeRules.from_mapping({"plan.*": "merge"}).digest,
    }
    assert len(others) == 5
    assert all(len(d) == 16 for d in others)


# --- order independence ------------------------------------------------------------------

WRITERS = ("w0", "w1", "w2", "w3")
KEYS = ("k0", "k1", "k2")
SOURCES: tuple[WriteSource, ...] = ("set", "set", "set", "set", "delete", "resolved", "merged")


def _values(kind: ValueKind) -> st.SearchStrategy[Any]:
    small = st.integers(min_value=0, max_value=4)
    if kind == "counter":
        return st.integers(min_value=-5, max_value=20)
    if kind == "set":
        return st.lists(small, unique=True, max_size=4)
    if kind == "map":
        return st.dictionaries(st.sampled_from("abcd"), small, max_size=4)
    if kind == "list":
        return st.lists(st.sampled_from("xyz"), max_size=4)
    return st.one_of(st.none(), small, st.text("ab", max_size=2))


@st.composite
def _value_json(draw: st.DrawFn, kind: ValueKind) -> tuple[str, ValueKind]:
    """A value of ``kind``; now and then one of another kind, or one that does not parse."""
    roll = draw(st.integers(min_value=0, max_value=9))
    if roll == 0:
        return draw(st.sampled_from(["not json", "[1, 1]", "true", "{}", "[]"])), kind
    if roll == 1:
        kind = draw(st.sampled_from(KINDS))
    return json.dumps(draw(_values(kind))), kind


@st.composite
def histories(
    draw: st.DrawFn, kind: ValueKind, *, vectors: st.SearchStrategy[dict[str, int]] | None = None
) -> list[tuple[str, Write]]:
    """Writes of 2-4 writers to 1-3 keys, in the order they were made, as (key, write).

    Each writer keeps its vector: before a write it may join another writer's vector (it
    read that writer's state), then increments its own entry. With ``vectors``, writes
    carry arbitrary vectors instead (a writer that breaks the rule).
    """
    writers = WRITERS[: draw(st.integers(min_value=2, max_value=4))]
    keys = KEYS[: draw(st.integers(min_value=1, max_value=3))]
    seen: dict[str, dict[str, int]] = {w: {} for w in writers}
    out: list[tuple[str, Write]] = []
    for index in range(draw(st.integers(min_value=1, max_value=14))):
        actor = draw(st.sampled_from(writers))
        if draw(st.booleans()):
            seen[actor] = join(seen[actor], seen[draw(st.sampled_from(writers))])
        seen[actor] = increment(seen[actor], actor)
        vector = seen[actor] if vectors is None else draw(vectors)
        source: WriteSource = draw(st.sampled_from(SOURCES))
        value: str | None
        value_kind: ValueKind
        if source == "delete":
            value, value_kind = None, "value"
        elif source != "set" and draw(st.integers(min_value=0, max_value=3)) == 0:
            value, value_kind = None, kind  # a resolve or merge that settled on no value
        else:
            value, value_kind = draw(_value_json(kind))
        w = Write(
            event_id=f"e{index}",
            seq=index + 1,
            actor=actor,
            occurred_at=T0 + timedelta(seconds=draw(st.integers(min_value=0, max_value=3))),
            vector=vector,
            value_json=value,
            kind=value_kind,
            source=source,
        )
        out.append((draw(st.sampled_from(keys)), w))
    return out


def _apply(
    writes: Iterable[tuple[str, Write]], policy_for: Callable[[str], Policy]
) -> dict[str, KeyState]:
    keys: dict[str, KeyState] = {}
    for key, w in writes:
        keys[key] = apply_write(keys.get(key), w, key, policy_for(key))
    return keys


def _reordered(data: st.DataObject, writes: Sequence[tuple[str, Write]]) -> list[tuple[str, Write]]:
    """The same writes in a random order, some of them delivered more than once."""
    again = data.draw(st.lists(st.sampled_from(writes), max_size=4), label="duplicates")
    return data.draw(st.permutations([*writes, *again]), label="order")


def _check_keys(keys: Mapping[str, KeyState], writes: Sequence[tuple[str, Write]]) -> None:
    """What the module docstring says each key is, whatever the order."""
    for key, state in keys.items():
        mine = [w for k, w in writes if k == key]
        assert state.siblings == maximal(mine)
        assert state.conflicted == (state.policy == "manual" and len(state.siblings) > 1)
        if state.policy == "merge":
            assert state.history == tuple(sorted(mine, key=lambda w: w.order_key))
        else:
            assert state.history == ()
        if state.policy == "last-write-wins":
            assert state.value_json == state.siblings[-1].value_json


@settings(max_examples=200, deadline=None)
@given(data=st.data(), policy=st.sampled_from(POLICIES), kind=st.sampled_from(KINDS))
def test_every_order_of_the_same_writes_gives_the_same_keys(
    data: st.DataObject, policy: Policy, kind: ValueKind
) -> None:
    writes = data.draw(histories(kind), label="writes")
    expected = _apply(writes, lambda _key: policy)
    _check_keys(expected, writes)
    assert _apply(_reordered(data, writes), lambda _key: policy) == expected


@settings(max_examples=200, deadline=None)
@given(data=st.data(), policy=st.sampled_from(POLICIES), kind=st.sampled_from(KINDS))
def test_every_order_gives_the_same_keys_even_when_writers_break_the_vector_rule(
    data: st.DataObject, policy: Policy, kind: ValueKind
) -> None:
    vectors = st.dictionaries(
        st.sampled_from(WRITERS[:3]), st.integers(min_value=0, max_value=2), max_size=3
    )
    writes = data.draw(histories(kind, vectors=vectors), label="writes")
    expected = _apply(writes, lambda _key: policy)
    _check_keys(expected, writes)
    assert _apply(_reordered(data, writes), lambda _key: policy) == expected


# --- order independence of whole threads -------------------------------------------------


def _event(thread_id: str, seq: int, key: str, w: Write) -> RecordedEvent:
    payload: Payload
    if w.source == "delete":
        payload = MemoryDelete(key=key)
    elif w.source == "resolved":
        payload = MemoryResolved(
            key=key, value_json=w.value_json, kind=w.kind, superseded_event_ids=()
        )
    elif w.source == "merged" or w.value_json is None:
        payload = MemoryMerged(
            key=key, value_json=w.value_json, kind=w.kind, policy="merge", merged_event_ids=()
        )
    else:
        payload = MemorySet(key=key, value_json=w.value_json, kind=w.kind)
    return RecordedEvent(
        event_id=w.event_id,
        thread_id=thread_id,
        tenant="default",
        seq=seq,
        type=payload.TYPE,
        occurred_at=w.occurred_at,
        actor=w.actor,
        version_vector=w.vector,
        causation_id=None,
        correlation_id=None,
        idempotency_key=None,
        payload=payload,
    )


def _without_seqs(memory: Mapping[str, KeyState]) -> dict[str, KeyState]:
    """Memory with every write's seq blanked: a reordered thread puts writes at new seqs."""

    def blank(writes: tuple[Write, ...]) -> tuple[Write, ...]:
        return tuple(dataclasses.replace(w, seq=0) for w in writes)

    return {
        k: dataclasses.replace(s, siblings=blank(s.siblings), history=blank(s.history))
        for k, s in memory.items()
    }


def _fold_memory(writes: Sequence[tuple[str, Write]], rules: MergeRules) -> dict[str, KeyState]:
    events = [_event("t", seq, key, w) for seq, (key, w) in enumerate(writes, start=1)]
    state, used = fold(ThreadState(thread_id="t"), events, rules)
    assert used == len(events)
    assert state.version == len(events)
    return _without_seqs(state.memory)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    policies=st.lists(st.sampled_from(POLICIES), min_size=3, max_size=3),
)
def test_folding_a_thread_in_any_order_gives_the_same_memory(
    data: st.DataObject, kind: ValueKind, policies: list[Policy]
) -> None:
    rules = MergeRules("last-write-wins", tuple(zip(KEYS, policies, strict=True)))
    writes = data.draw(histories(kind), label="writes")
    expected = _fold_memory(writes, rules)
    assert expected == _without_seqs(_apply(writes, rules.policy_for))
    assert _fold_memory(_reordered(data, writes), rules) == expected
