"""Event ids are UUIDv7: time-ordered, strictly increasing within a process."""

from __future__ import annotations

import itertools
import time

from producers.ids import uuid7, uuid7_floor


def test_ids_strictly_increase_even_within_one_millisecond() -> None:
    ids = [uuid7() for _ in range(100_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {"specified in RFC 4122"}


def test_the_floor_of_a_millisecond_sorts_before_its_ids() -> None:
    now_ms = time.time_ns() // 1_000_000
    ident = uuid7()
    assert uuid7_floor(now_ms - 1) < ident < uuid7_floor(now_ms + 1000)
