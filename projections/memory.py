"""Working memory of a thread: keys with version vectors, and the merge policies.

Each key keeps its *siblings*: the writes no other write of the key has seen (the maximal
elements of its writes under the version-vector order). A write whose vector dominates a
sibling replaces it; a write that a sibling dominates is stale and changes nothing; a
concurrent write joins the siblings. When one sibling is left, it is the value. When
several are, the key's merge policy decides:

``last-write-wins``
    The sibling that occurred last wins (``occurred_at``, then actor id, then event id as
    tie-breaks). A delete can win.
``merge``
    A type-aware three-way merge of the live siblings against their *base*, the value the
    key had at the meet of their vectors (what every sibling had seen). By ``kind``:

    * ``counter`` (a JSON integer): base + the sum of each sibling's change to the base;
    * ``set`` (a JSON array, no duplicates): add-wins; an element stays if every sibling
      kept it or any sibling added it (result sorted by its JSON text);
    * ``map`` (a JSON object): merged per field: a field changed by one sibling takes that
      change, by several the last of them (sibling order), and a change beats a removal;
    * ``list`` (a JSON array): the base's items every sibling kept, in base order, then
      each sibling's new items in causal order (siblings are concurrent, so by time, then
      actor), each sibling's items in its own order;
    * ``value``, mixed kinds, or values that do not parse as their kind: last-write-wins.

    A delete concurrent with an update loses to it. Merge keys keep their whole write
    history (to find bases); other keys keep only their siblings.
``manual``
    All siblings are kept and the key is *in conflict* (it has no value) until a
    ``memory.Resolved`` write, whose vector dominates them all, settles it.

Every function here is a pure function of the set of writes: replicas that saw the same
writes agree on every key whatever the order they saw them in, duplicates included.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, get_args

from eventstore.payloads import ValueKind
from projections.vectors import Order, compare, descends, meet, normalized

Policy = Literal["last-write-wins", "merge", "manual"]
"""The merge policies (see the module docstring)."""
POLICIES: tuple[Policy, ...] = get_args(Policy)

WriteSource = Literal["set", "delete", "merged", "resolved"]
"""Which event made a write: ``memory.Set``, ``Delete``, ``Merged`` or ``Resolved``."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    """One write of a memory key.

    Attributes:
        event_id: The event that made it.
        seq: Its seq in the thread.
        actor: Who wrote it.
        occurred_at: When (the event's time).
        vector: Its causal context (the event's version vector, or the implicit one).
        value_json: The value as JSON text; ``None`` for a delete.
        kind: How ``merge`` treats the value.
        source: The event type that made it.
    """

    event_id: str
    seq: int
    actor: str
    occurred_at: datetime
    vector: Mapping[str, int]
    value_json: str | None
    kind: ValueKind = "value"
    source: WriteSource = "set"

    @property
    def order_key(self) -> tuple[datetime, str, str]:
        """Sort key of last-write-wins: time, then actor, then event id."""
        return (self.occurred_at, self.actor, self.event_id)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeyState:
    """A memory key: its siblings, its value, and whether it is in conflict.

    Attributes:
        key: The key.
        policy: The policy that decided it.
        siblings: The writes no other write has seen, in last-write-wins order.
        value_json: The value as JSON text; ``None`` when deleted or in conflict.
        kind: The value's kind.
        conflicted: True under ``manual`` while more than one sibling is left.
        history: Every write of the key, in last-write-wins order (``merge`` keys only).
    """

    key: str
    policy: Policy
    siblings: tuple[Write, ...]
    value_json: str | None
    kind: ValueKind = "value"
    conflicted: bool = False
    history: tuple[Write, ...] = ()

    @property
    def deleted(self) -> bool:
        """True when the key has no value and is not in conflict (a delete won)."""
        return self.value_json is None and not self.conflicted

    @property
    def vector(self) -> dict[str, int]:
        """The join of the siblings' vectors: the context a writer that read this key has."""
        out: dict[str, int] = {}
        for sibling in self.siblings:
            for actor, count in sibling.vector.items():
                if count > out.get(actor, 0):
                    out[actor] = count
        return out

    @property
    def conflict_id(self) -> str:
        """A stable name of the current set of siblings (same everywhere, any order)."""
        ids = ",".join(sorted(s.event_id for s in self.siblings))
        return hashlib.sha256(f"{self.key}\n{ids}".encode()).hexdigest()[:32]


_POLICY_CACHE = 4096
"""Most keys whose policy a ``MergeRules`` remembers (then it starts over)."""


@dataclasses.dataclass(frozen=True, slots=True)
class MergeRules:
    """Which policy each memory key uses: exact keys, then the longest matching prefix.

    Args:
        default: The policy of keys no rule names.
        rules: ``(pattern, policy)`` pairs; a pattern ending in ``*`` is a prefix
            (``"plan.*"`` matches ``plan.steps``), any other pattern an exact key.

    Raises:
        ValueError: an unknown policy name (the message names the pattern).
    """

    default: Policy = "last-write-wins"
    rules: tuple[tuple[str, Policy], ...] = ()
    _policies: dict[str, Policy] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )  # policy_for's answers, by key (bounded: see policy_for)

    def __post_init__(self) -> None:
        for pattern, policy in (("(default)", self.default), *self.rules):
            if policy not in POLICIES:
                raise ValueError(
                    f"merge rule {pattern!r}: unknown policy {policy!r}; "
                    f"use one of {', '.join(POLICIES)}"
                )

    @classmethod
    def from_mapping(cls, rules: Mapping[str, str], default: str = "last-write-wins") -> MergeRules:
        """Build rules from ``{pattern: policy}`` (as settings give them).

        Raises:
            ValueError: an unknown policy name, naming the pattern.
        """
        return cls(default, tuple(sorted(rules.items())))  # type: ignore[arg-type]  # checked in __post_init__

    def policy_for(self, key: str) -> Policy:
        """The policy of ``key``."""
        known = self._policies.get(key)
        if known is not None:
            return known
        if len(self._policies) >= _POLICY_CACHE:
            self._policies.clear()
        policy = self._policy_for(key)
        self._policies[key] = policy
        return policy

    def _policy_for(self, key: str) -> Policy:
        best: tuple[int, Policy] | None = None
        for pattern, policy in self.rules:
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                if key.startswith(prefix) and (best is None or len(prefix) >= best[0]):
                    best = (len(prefix), policy)
            elif pattern == key:
                return policy
        return best[1] if best is not None else self.default

    @property
    def digest(self) -> str:
        """A short fingerprint; snapshots made under other rules are not reused."""
        text = json.dumps([self.default, [list(r) for r in self.rules]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def apply_write(current: KeyState | None, write: Write, key: str, policy: Policy) -> KeyState:
    """Return the key after ``write``; unchanged if the write was seen before or is stale.

    Args:
        current: The key as it is, or ``None`` when it was never written.
        write: The new write.
        key: The key's name.
        policy: Its policy (from :class:`MergeRules`).
    """
    siblings: tuple[Write, ...] = current.siblings if current is not None else ()
    history: tuple[Write, ...] = current.history if current is not None else ()
    if any(s.event_id == write.event_id for s in siblings):
        return current  # type: ignore[return-value]  # a sibling exists, so current is set
    keep_history = policy == "merge"
    if keep_history and _find(history, write) is not None:
        return current  # type: ignore[return-value]
    kept: list[Write] = []
    stale = False
    for sibling in siblings:
        order = compare(write.vector, sibling.vector)
        if order is Order.AFTER:
            continue
        if order is Order.BEFORE:
            stale = True
        kept.append(sibling)
    if not stale:
        kept.append(write)
    new_history = _inserted(history, write) if keep_history else ()
    if stale and current is not None and not keep_history:
        return current
    return resolve(key, policy, _sorted(kept), new_history)


def resolve(
    key: str, policy: Policy, siblings: tuple[Write, ...], history: tuple[Write, ...] = ()
) -> KeyState:
    """The key's state for these siblings under ``policy`` (see the module docstring)."""
    winner = siblings[-1]
    if len(siblings) == 1:
        return KeyState(
            key=key,
            policy=policy,
            siblings=siblings,
            value_json=winner.value_json,
            kind=winner.kind,
            history=history,
        )
    if policy == "manual":
        return KeyState(
            key=key,
            policy=policy,
            siblings=siblings,
            value_json=None,
            kind=winner.kind,
            conflicted=True,
            history=history,
        )
    if policy == "merge":
        value, kind = _merge(siblings, history)
        return KeyState(
            key=key, policy=policy, siblings=siblings, value_json=value, kind=kind, history=history
        )
    return KeyState(
        key=key,
        policy=policy,
        siblings=siblings,
        value_json=winner.value_json,
        kind=winner.kind,
        history=history,
    )


def maximal(writes: Iterable[Write]) -> tuple[Write, ...]:
    """The writes no other write of the collection dominates, in last-write-wins order.

    A dominating vector has a greater sum of counters, so writes are taken by falling sum
    and each is checked against the maximal ones found so far only: one that a
    non-maximal write dominates is dominated by a maximal one too (transitivity).
    """
    pool = sorted(
        {w.event_id: w for w in writes}.values(), key=lambda w: sum(w.vector.values()), reverse=True
    )
    out: list[Write] = []
    for w in pool:
        if not any(compare(w.vector, m.vector) is Order.BEFORE for m in out):
            out.append(w)
    return _sorted(out)


def _find(history: tuple[Write, ...], write: Write) -> int | None:
    """Index of ``write`` in a history sorted by ``order_key`` (which ends with the event
    id, so equal keys mean the same event)."""
    i = bisect.bisect_left(history, write.order_key, key=_order_key)
    if i < len(history) and history[i].order_key == write.order_key:
        return i
    return None


def _inserted(history: tuple[Write, ...], write: Write) -> tuple[Write, ...]:
    i = bisect.bisect_right(history, write.order_key, key=_order_key)
    return (*history[:i], write, *history[i:])


def _order_key(write: Write) -> tuple[datetime, str, str]:
    return write.order_key


def _sorted(writes: Iterable[Write]) -> tuple[Write, ...]:
    return tuple(sorted(writes, key=lambda w: w.order_key))


# --- the merge policy ------------------------------------------------------------------

_EMPTY: dict[str, Any] = {"counter": 0, "set": [], "list": [], "map": {}}
_TYPES: dict[str, type] = {"counter": int, "set": list, "list": list, "map": dict}


def _merge(siblings: Sequence[Write], history: Sequence[Write]) -> tuple[str | None, ValueKind]:
    live = [s for s in siblings if s.value_json is not None]
    if not live:
        return None, siblings[-1].kind
    last = live[-1]
    kind = last.kind
    if len(live) == 1 or kind == "value" or any(s.kind != kind for s in live):
        return last.value_json, last.kind
    values = [_parse(s.value_json, kind) for s in live]
    if any(v is _INVALID for v in values):
        return last.value_json, kind
    base_vector = meet(*(s.vector for s in live))
    # Strictly before every live sibling: a write at or below the meet is at or below each
    # sibling, so only one with a sibling's very vector is left out (two writes of one
    # actor from the same state are not their own base, which would recurse forever).
    sibling_vectors = [normalized(s.vector) for s in live]
    base_writes = maximal(
        h
        for h in history
        if descends(base_vector, h.vector) and normalized(h.vector) not in sibling_vectors
    )
    base: Any = _EMPTY[kind]
    if base_writes:
        base_json, base_kind = _merge(base_writes, history)
        parsed = _parse(base_json, kind) if base_kind == kind else _INVALID
        if parsed is not _INVALID:
            base = parsed
    merged = _MERGERS[kind](base, values)
    return _dump(merged), kind


_INVALID: Any = object()


def _parse(text: str | None, kind: str) -> Any:
    if text is None:
        return _INVALID
    try:
        value = json.loads(text)
    except ValueError:
        return _INVALID
    expected = _TYPES[kind]
    if not isinstance(value, expected) or (kind == "counter" and isinstance(value, bool)):
        return _INVALID
    if isinstance(value, list) and kind == "set" and len({_dump(x) for x in value}) != len(value):
        return _INVALID
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _merge_counter(base: int, values: list[int]) -> int:
    return base + sum(v - base for v in values)


def _merge_set(base: list[Any], values: list[list[Any]]) -> list[Any]:
    base_keys = {_dump(x) for x in base}
    each = [{_dump(x): x for x in v} for v in values]
    kept = {k for k in base_keys if all(k in e for e in each)}
    added = {k: x for e in each for k, x in e.items() if k not in base_keys}
    out = {k: x for e in each for k, x in e.items() if k in kept}
    out.update(added)
    return [out[k] for k in sorted(out)]


def _merge_list(base: list[Any], values: list[list[Any]]) -> list[Any]:
    base_counts = _counts(base)
    each_counts = [_counts(v) for v in values]
    # An item of the base survives as many times as every sibling kept it.
    survive = {k: min(c.get(k, 0) for c in each_counts) for k in base_counts}
    out: list[Any] = []
    for item in base:
        k = _dump(item)
        if survive.get(k, 0) > 0:
            survive[k] -= 1
            out.append(item)
    for value in values:
        budget = dict(base_counts)
        for item in value:
            k = _dump(item)
            if budget.get(k, 0) > 0:
                budget[k] -= 1  # one of the base's copies, already placed (or removed)
            else:
                out.append(item)
    return out


def _counts(items: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        k = _dump(item)
        out[k] = out.get(k, 0) + 1
    return out


_ABSENT: Any = object()


def _merge_map(base: dict[str, Any], values: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in sorted(set(base).union(*values)):
        before = base.get(field, _ABSENT)
        changes = [v.get(field, _ABSENT) for v in values]
        changed = [c for c in changes if not _same(c, before)]
        if not changed:
            result = before
        else:
            present = [c for c in changed if c is not _ABSENT]
            result = present[-1] if present else _ABSENT
        if result is not _ABSENT:
            out[field] = result
    return out


def _same(a: Any, b: Any) -> bool:
    if a is _ABSENT or b is _ABSENT:
        return a is b
    return _dump(a) == _dump(b)


_MERGERS: dict[str, Any] = {
    "counter": _merge_counter,
    "set": _merge_set,
    "list": _merge_list,
    "map": _merge_map,
}
