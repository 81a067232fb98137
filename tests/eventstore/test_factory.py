"""Ids and clocks of :mod:`eventstore.factory`."""

from __future__ import annotations

import time
import uuid

from eventstore.factory import uuid7


def test_uuid7_is_a_version_7_rfc_9562_uuid_in_canonical_text() -> None:
    for _ in range(1000):
        text = uuid7()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lower-case hex, hyphens at 8-4-4-4-12
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_uuid7_carries_the_current_millisecond_and_sorts_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(5000)]  # several per millisecond: the counter orders them
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first_ms = uuid.UUID(ids[0]).int >> 80
    assert before <= first_ms <= after + 1
