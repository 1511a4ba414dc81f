"""Kept for code written against it: the Redis layout now lives in `worker.brokers.redis`."""

from worker.brokers import ACTOR, LEASE_SECONDS
from worker.brokers.redis import (
    NAMESPACE,
    SENTINEL_KEY,
    depth,
    encode,
    enqueue,
    existing,
    messages_key,
    queue_key,
    wake_channel,
)

__all__ = [
    "ACTOR",
    "LEASE_SECONDS",
    "NAMESPACE",
    "SENTINEL_KEY",
    "depth",
    "encode",
    "enqueue",
    "existing",
    "messages_key",
    "queue_key",
    "wake_channel",
]
