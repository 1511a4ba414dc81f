"""Resolve an endpoint URL's host before a connection is borrowed, and answer from memory.

Setting an endpoint's URL checks where it leads (`worker.ops.validation.check_destination`),
and resolving a host name can take seconds (up to `RESOLVE_TIMEOUT`). A server must not hold
a pooled Postgres connection meanwhile, so it resolves first with `prefetch`, then hands the
`Prefetched` resolver to the endpoint registry (``App.endpoints(conn, resolver=...)``): the
registry's own check, inside the connection, is answered from what was already resolved.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any

from worker.errors import WebhooksError
from worker.ops.validation import check_destination, validate_url
from worker.policy.destination import Resolver
from worker.settings import IPNetwork

__all__ = ["Prefetched", "prefetch"]

_Answer = Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]


class Prefetched:
    """A resolver that asks ``resolver`` once per (host, port) and then answers from memory.

    A name still being resolved when it is asked again (the first check gave up waiting for
    it) is answered as not resolving, at once, as the first check concluded.
    """

    def __init__(self, resolver: Resolver = socket.getaddrinfo) -> None:
        self._resolver = resolver
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, int], _Answer | BaseException | None] = {}

    def __call__(self, host: str, port: int) -> _Answer:
        key = (host, port)
        with self._lock:
            asked = key in self._answers
            known = self._answers.get(key)
            if not asked:
                self._answers[key] = None  # being resolved
        if asked:
            if known is None:
                raise socket.gaierror(f"{host}: no answer in time")
            if isinstance(known, BaseException):
                raise known
            return known
        try:
            answer = self._resolver(host, port)
        except (OSError, UnicodeError) as exc:
            with self._lock:
                self._answers[key] = exc
            raise
        with self._lock:
            self._answers[key] = answer
        return answer


def prefetch(
    url: str | None, allowed: Sequence[IPNetwork], resolver: Resolver = socket.getaddrinfo
) -> Prefetched:
    """Resolve ``url``'s host as the destination check will, and return what remembers it.

    Nothing is refused or warned about here: the registry's own check does that, with the
    answers this obtained. A URL that is not valid is left to that check too.
    """
    answers = Prefetched(resolver)
    if url is not None:
        try:
            validate_url(url)
            check_destination(url, allowed, answers)
        except (WebhooksError, ValueError):
            pass  # said by the registry's own check, in its order
    return answers
