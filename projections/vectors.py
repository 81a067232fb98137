"""Version vectors: the causal context of memory writes.

A vector maps an actor (agent or replica id) to how many of its writes the holder has seen.
Writers follow one rule: before a write, take the join of every vector they have seen and
increment their own entry; the write carries the result. Each write then carries its own
*dot* (its actor's entry), so two writes are concurrent exactly when neither vector is
greater than or equal to the other (this is what dotted version vectors guarantee, without
a separate dot field). Missing entries count as 0; zero entries are dropped.

Writes that carry no vector (appended by hand, say) are given the implicit vector
``{LOG_CLOCK: seq}``: ordered among themselves by their seq in the thread, and concurrent
with every write that carries a vector, so the key's merge policy decides between them.

Everything here is pure: functions over mappings, returning new dicts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

VersionVector = Mapping[str, int]
"""actor -> counter; missing actors count as 0."""

LOG_CLOCK = "~log"
"""The actor of the implicit vector of writes that carry none (see the module docstring)."""


class Order(enum.Enum):
    """How two version vectors relate."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


def compare(a: VersionVector, b: VersionVector) -> Order:
    """Return how ``a`` relates to ``b``.

    ``BEFORE`` means ``a`` happened before ``b`` (``a <= b`` pointwise and they differ).
    """
    a_bigger = b_bigger = False
    for actor, count in a.items():
        other = b.get(actor, 0)
        if count > other:
            a_bigger = True
        elif count < other:
            b_bigger = True
    for actor, count in b.items():
        if actor not in a:
            if count > 0:
                b_bigger = True
            elif count < 0:
                a_bigger = True
    if a_bigger and b_bigger:
        return Order.CONCURRENT
    if a_bigger:
        return Order.AFTER
    if b_bigger:
        return Order.BEFORE
    return Order.EQUAL


def descends(a: VersionVector, b: VersionVector) -> bool:
    """True when ``a`` has seen everything ``b`` has (``a >= b`` pointwise)."""
    return all(a.get(actor, 0) >= count for actor, count in b.items())


def dominates(a: VersionVector, b: VersionVector) -> bool:
    """True when ``a`` strictly follows ``b``: ``a >= b`` and ``a != b``."""
    return compare(a, b) is Order.AFTER


def concurrent(a: VersionVector, b: VersionVector) -> bool:
    """True when neither vector has seen all of the other."""
    return compare(a, b) is Order.CONCURRENT


def join(*vectors: VersionVector) -> dict[str, int]:
    """The pointwise maximum: a context that has seen everything each vector has."""
    out: dict[str, int] = {}
    for vector in vectors:
        for actor, count in vector.items():
            if count > out.get(actor, 0):
                out[actor] = count
    return out


def meet(*vectors: VersionVector) -> dict[str, int]:
    """The pointwise minimum: what every vector has seen (empty for no vectors)."""
    if not vectors:
        return {}
    first, *rest = vectors
    out: dict[str, int] = {}
    for actor, count in first.items():
        low = min([count, *(v.get(actor, 0) for v in rest)])
        if low > 0:
            out[actor] = low
    return out


def increment(vector: VersionVector, actor: str) -> dict[str, int]:
    """A copy of ``vector`` with ``actor``'s entry one higher: the vector of its next write."""
    out = {a: c for a, c in vector.items() if c > 0}
    out[actor] = out.get(actor, 0) + 1
    return out


def normalized(vector: VersionVector) -> dict[str, int]:
    """A copy without zero entries (equal vectors compare equal as dicts)."""
    return {a: c for a, c in vector.items() if c > 0}
