"""The relay listens on the channel a publish notifies."""

from __future__ import annotations

from producers.publish import CHANNEL
from worker.store import queries


def test_the_relay_listens_where_producers_notify() -> None:
    assert f"listen {CHANNEL}" == queries.LISTEN
