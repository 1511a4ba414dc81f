"""Generate UUIDv7 event ids: time-ordered, so the outbox index stays append-only."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0


def uuid7() -> uuid.UUID:
    """Return a new RFC 9562 UUIDv7, strictly increasing within this process."""
    global _last
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << 74) - 1)
    with _lock:
        # 48 bits of milliseconds then 74 random bits, as one number that only grows: ids
        # made in the same millisecond count up from the previous one.
        seq = ((time.time_ns() // 1_000_000) << 74) | rand
        if seq <= _last:
            seq = _last + 1
        _last = seq
    ms, rand_a, rand_b = seq >> 74, (seq >> 62) & 0xFFF, seq & ((1 << 62) - 1)
    # Version 7 and the RFC 4122 variant sit between the fields, outside the counter.
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b)


def uuid7_floor(epoch_ms: int) -> uuid.UUID:
    """Return the smallest UUIDv7 of the given millisecond (for id-range scans by time)."""
    return uuid.UUID(int=(epoch_ms << 80) | (0x7 << 76) | (0x2 << 62))
