"""What the engine tells the outside about deliveries (metrics implement `Observer`)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Observer", "Quiet"]


class Observer(Protocol):
    """Receive what happens to deliveries (metrics implement it)."""

    def attempt(self, outcome: str, seconds: float) -> None: ...
    def succeeded(self, latency: float) -> None: ...
    def held(self, count: int, capacity: int) -> None: ...
    def secret_failed(self) -> None: ...


class Quiet:
    """Observe nothing: the engine's observer when no one listens."""

    def attempt(self, outcome: str, seconds: float) -> None:
        pass

    def succeeded(self, latency: float) -> None:
        pass

    def held(self, count: int, capacity: int) -> None:
        pass

    def secret_failed(self) -> None:
        pass
