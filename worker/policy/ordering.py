"""Ordered delivery: may a delivery go now, or must it wait for the one before it?

An endpoint marked ``ordered`` receives the events of one ordering key one after another, in
publish (outbox id) order: the next is not sent until the one before it has succeeded or is
dead (events without a key form one sequence per endpoint). Postgres gathers the facts when a
delivery is claimed (`worker.store.engine.claim`: what lies ahead of it in its key); this
module decides, without I/O, and says how a delivery that must wait is put back.

When the head of a key dies, WEBHOOKS_ORDERED_ON_DEATH says what its key does: ``continue``
(the default) goes on with the next event, and the dead letter says it broke the order;
``block`` waits until the dead head is replayed or discarded (`webhooks dlq discard`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from worker.policy.plan import Claimed, Release

__all__ = ["OnDeath", "Verdict", "may_go", "wait"]

OnDeath = Literal["continue", "block"]


class Verdict(Enum):
    """What a claimed delivery does about its ordering key."""

    #: Nothing ahead of it in its key (or its endpoint is not ordered): attempt it.
    GO = "go"
    #: An earlier event of its key is still pending, or not yet fanned out: wait for it.
    WAIT = "wait"
    #: An earlier event of its key is dead and neither replayed nor discarded (``block``).
    BLOCKED = "blocked"


def may_go(
    ordering_key: str | None, ahead_pending: bool, ahead_dead: bool, on_death: OnDeath
) -> Verdict:
    """Decide whether a delivery may be attempted now.

    ``ordering_key`` is None for a delivery to an unordered endpoint; ``ahead_pending``: an
    earlier delivery of the key is pending (or an earlier event of the key has not been
    fanned out yet); ``ahead_dead``: an earlier delivery of the key is dead, neither replayed
    nor discarded.
    """
    if ordering_key is None:
        return Verdict.GO
    if ahead_pending:
        return Verdict.WAIT
    if ahead_dead and on_death == "block":
        return Verdict.BLOCKED
    return Verdict.GO


def wait(job: Claimed, max_age: float) -> Release:
    """Return the release of a delivery that waits for its key: parked until it expires.

    It keeps its attempts and gets no message; the delivery before it wakes it when it
    finishes (`worker.store.engine.order_next`). Parked at its expiry, the scheduler takes it
    up then if nothing has, and it dies of age (guarantee 3: none stays pending for ever).
    """
    expires: datetime = job.budget_started_at + timedelta(seconds=max_age)
    return Release(next_attempt_at=expires, order_wait=True)
