"""A queue in this process's memory, for unit tests of whatever enqueues."""

from __future__ import annotations

from collections.abc import Sequence

from worker.queue import BrokerError, Item


class MemoryQueue:
    """Keep enqueued items in a list; `fail` makes every operation raise BrokerError."""

    can_tell_pending = True

    def __init__(self, name: str = "webhooks") -> None:
        self.name = name
        self.items: list[Item] = []
        self.fail = False
        self.lost = False

    def _check(self) -> None:
        if self.fail:
            raise BrokerError("memory queue set to fail")

    def enqueue(self, items: Sequence[Item]) -> None:
        self._check()
        self.items.extend(items)

    def may_be_pending(self, message_ids: Sequence[str]) -> list[bool]:
        self._check()
        held = {mid for _, mid in self.items}
        return [mid in held for mid in message_ids]

    def lost_data(self) -> bool:
        self._check()
        lost, self.lost = self.lost, False
        return lost

    def requeue_abandoned(self) -> int:
        self._check()
        return 0

    def depth(self) -> int:
        self._check()
        return len(self.items)

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass
