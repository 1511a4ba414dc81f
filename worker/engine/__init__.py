"""The delivery engine: claim, send and record deliveries in batches, many in flight."""

from worker.engine.engine import DEFAULT_CONCURRENCY, Engine, Observer

__all__ = ["DEFAULT_CONCURRENCY", "Engine", "Observer"]
