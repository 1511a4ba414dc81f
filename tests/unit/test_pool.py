"""The workers' connection pool: httpcore's, minus closing a connection it handed out."""

from __future__ import annotations

import httpcore
from httpcore._sync.connection_pool import PoolRequest

from worker.transport import _Pool

ORIGIN = httpcore.URL("http://receiver.test/").origin


class Idle:
    """A kept-alive connection between requests (the part of the interface a pass reads)."""

    def __init__(self, *, expired: bool = False) -> None:
        self.expired = expired

    def is_closed(self) -> bool:
        return False

    def has_expired(self) -> bool:
        return self.expired

    def is_idle(self) -> bool:
        return True

    def is_available(self) -> bool:
        return True

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == ORIGIN


def given_to_a_waiting_request(pool: _Pool, connection: Idle) -> None:
    request = PoolRequest(httpcore.Request("POST", "http://receiver.test/hook"))
    request.assign_to_connection(connection)  # type: ignore[arg-type]
    pool._requests.append(request)


def test_a_surplus_connection_handed_to_a_request_is_kept() -> None:
    pool = _Pool(max_keepalive_connections=1)
    handed, spare = Idle(), Idle()
    pool._connections = [handed, spare]  # type: ignore[list-item]  # one more than kept alive
    given_to_a_waiting_request(pool, handed)

    closing = pool._assign_requests_to_connections()

    # httpcore picks the first idle connection; it stays, one over the limit until a later
    # pass, once the request has started on it.
    assert closing == []
    assert set(pool._connections) == {handed, spare}
    pool._requests.clear()
    assert pool._assign_requests_to_connections() == [spare]


def test_an_expired_connection_handed_to_a_request_is_kept() -> None:
    pool = _Pool()
    handed, stale = Idle(expired=True), Idle(expired=True)
    pool._connections = [handed, stale]  # type: ignore[list-item]
    given_to_a_waiting_request(pool, handed)

    assert pool._assign_requests_to_connections() == [stale]
    assert pool._connections == [handed]


def test_connections_nobody_was_given_are_closed_as_httpcore_decides() -> None:
    pool = _Pool(max_keepalive_connections=1)
    first, second = Idle(), Idle()
    pool._connections = [first, second]  # type: ignore[list-item]

    assert pool._assign_requests_to_connections() == [first]
    assert pool._connections == [second]
