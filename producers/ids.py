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
    rand = int.from_bytes(os.urandom(10), "big")
    with _lock:
        ms = time.time_ns() // 1_000_000
        # 48 bits of milliseconds, then 74 random bits; monotonic within a process even when
        # many ids share one millisecond (the counter borrows the clock's next tick).
        value = (ms << 80) | (rand & ((1 << 80) - 1))
        if value <= _last:
            value = _last + 1
        _last = value
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def uuid7_floor(epoch_ms: int) -> uuid.UUID:
    """Return the smallest UUIDv7 of the given millisecond (for id-range scans by time)."""
    return uuid.UUID(int=(epoch_ms << 80) | (0x7 << 76) | (0x2 << 62))
