"""Check what an endpoint may be set to: its URL and where it leads, its custom headers,
its event types (or patterns), payload filter, rate limit, description and tenant.

Every check takes values and raises InvalidEndpoint naming what is wrong; only
`check_destination` does I/O (it resolves the host name once, within a deadline).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

from psycopg.types.json import Jsonb

from producers import names
from producers.errors import InvalidEvent
from worker.errors import BlockedDestination, InvalidEndpoint, NotFound
from worker.policy import filters
from worker.policy.destination import (
    NOT_AN_ADDRESS,
    Resolver,
    Target,
    check_resolved,
    is_local_name,
    refusal,
    target,
)
from worker.policy.filters import Filter
from worker.policy.headers import FIELD_VALUE, RESERVED_HEADERS, TOKEN, is_token, unsendable
from worker.policy.jsonpath import compile_path
from worker.settings import IPNetwork

MAX_URL = 2048
#: Seconds `check_destination` waits for a host name to resolve before saying it did not.
RESOLVE_TIMEOUT = 3.0
MAX_HEADERS = 32
#: A custom header's name and value, as the API's schema states them (the sender's rule).
HEADER_NAME = TOKEN
HEADER_VALUE = FIELD_VALUE
#: Characters of a custom header value, at most.
MAX_HEADER_VALUE = 4096


def validate_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL with a host and no credentials, else raise."""
    if not isinstance(url, str) or not url:
        raise InvalidEndpoint("URL is empty")
    if len(url) > MAX_URL:
        raise InvalidEndpoint(f"URL is longer than {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidEndpoint("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidEndpoint(f"URL is malformed: {exc}") from exc
    if not parts.scheme:
        raise InvalidEndpoint(f"URL must start with http:// or https://, got {url!r}")
    if parts.scheme not in ("http", "https"):
        raise InvalidEndpoint(f"URL must use http or https, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidEndpoint(
            "URL must not contain credentials (use --header instead)",
            api="URL must not contain credentials (send them in headers instead)",
        )
    if not parts.hostname:
        raise InvalidEndpoint("URL has no host")
    if port == 0:
        raise InvalidEndpoint("URL port must be 1-65535")
    if parts.fragment:
        raise InvalidEndpoint("URL must not contain a #fragment")
    # The worker's HTTP client (aiohttp, on yarl) parses it again, IDNA host names
    # included: a URL it refuses could never be delivered to, so it is refused here.
    _target(url)
    return url


def check_destination(
    url: str,
    allowed: Sequence[IPNetwork],
    resolver: Resolver = socket.getaddrinfo,
    timeout: float = RESOLVE_TIMEOUT,
) -> str | None:
    """Refuse a URL no attempt could ever reach; return a warning for a doubtful host name.

    The host is the one the worker connects to (`worker.policy.destination.target`: IDNA
    and Unicode spellings normalised as the sender does), judged by the sender's own rule.
    A host that is an IP literal in any spelling, or ``localhost``, that the worker would
    block raises InvalidEndpoint. A host name is resolved once: when the guard would block
    it today (an address not allowed, or no address at all), a warning is returned, since
    DNS may change before the first delivery. Every path that sets an endpoint's URL calls
    this.
    """
    where = _target(url)
    typed = (urlsplit(url).hostname or "").rstrip(".")
    host = where.shown if typed == where.shown.rstrip(".") else f"{typed} (read as {where.shown})"
    reason = refusal(where, allowed)
    if reason == NOT_AN_ADDRESS:
        raise InvalidEndpoint(
            f"URL host {host} is not a valid IP address: no delivery could reach it"
            " (write an IPv4 address as four decimal numbers, a.b.c.d, with no trailing dot)"
        )
    if reason is not None:
        raise InvalidEndpoint(_blocked_message(host, reason))
    if where.address is not None:
        return None
    try:
        _resolve_within(where.host, where.port, allowed, resolver, timeout)
    except BlockedDestination as exc:
        if is_local_name(where.host):
            why = "name of this machine" if exc.reason == "does not resolve" else exc.reason
            raise InvalidEndpoint(_blocked_message(host, why)) from None
        if exc.reason == "does not resolve":
            return f"{host} does not resolve: deliveries fail until it does"
        return (
            f"{host} resolves to a {exc.reason}, outside WEBHOOKS_ALLOWED_NETWORKS:"
            " deliveries are blocked while it does"
        )
    return None


def _target(url: str) -> Target:
    try:
        return target(url)
    except ValueError as exc:
        raise InvalidEndpoint(f"URL is malformed: {exc}") from exc


def _blocked_message(host: str, reason: str) -> str:
    return (
        f"URL host {host} is a {reason}, outside WEBHOOKS_ALLOWED_NETWORKS: no delivery"
        " could reach it (add its network to WEBHOOKS_ALLOWED_NETWORKS to allow it)"
    )


def _resolve_within(
    host: str, port: int, allowed: Sequence[IPNetwork], resolver: Resolver, timeout: float
) -> list[str]:
    # getaddrinfo cannot be interrupted: a name server that never answers keeps the thread,
    # not the command.
    pool = ThreadPoolExecutor(1, thread_name_prefix="resolve")
    try:
        infos = pool.submit(resolver, host, port).result(timeout)
    except FutureTimeout:
        raise BlockedDestination(host, "does not resolve") from None
    except (OSError, UnicodeError) as exc:
        raise BlockedDestination(host, "does not resolve") from exc
    finally:
        pool.shutdown(wait=False)
    return check_resolved(host, infos, allowed)


def parse_header(text: str) -> tuple[str, str]:
    """Split ``'Name: value'`` into a checked (name, value) pair."""
    name, sep, value = text.partition(":")
    if not sep:
        raise InvalidEndpoint(f"header {text!r} must look like 'Name: value'")
    return validate_header(name.strip(), value.strip())


def validate_header(name: str, value: str) -> tuple[str, str]:
    """Return (name, value) if the header may be sent with every delivery, else raise.

    The rule is the sender's own (`worker.policy.headers.unsendable`): a value it could not
    write would fail every attempt.
    """
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidEndpoint("header names and values must be text")
    if not is_token(name):
        raise InvalidEndpoint(f"header name {name!r} is not a valid HTTP token")
    lower = name.lower()
    if lower.startswith("webhook-") or lower in RESERVED_HEADERS or lower.startswith("proxy-"):
        raise InvalidEndpoint(f"header {name!r} is set by the delivery itself and cannot be set")
    problem = unsendable(name, value)
    if problem is not None:
        raise InvalidEndpoint(f"header {name!r} {problem}")
    if len(value) > MAX_HEADER_VALUE:
        raise InvalidEndpoint(f"header {name!r} value is over 4 KiB")
    return name, value


def check_event_types(types: Iterable[str] | None) -> list[str] | None:
    """Return the event types subscribed without repeats (None: every type), else raise.

    Each is an event type or a pattern (``order.*``, ``*``: `producers.names.check_event_pattern`).
    """
    if types is None:
        return None
    out = []
    for t in types:
        try:
            names.check_event_pattern(t)
        except InvalidEvent:
            what = (
                "pattern (`*` is a whole segment)"
                if isinstance(t, str) and "*" in t
                else "event type"
            )
            raise InvalidEndpoint(f"event type filter {t!r} is not a valid {what}") from None
        if t not in out:
            out.append(t)
    return out or None


def event_type_regex(types: Sequence[str] | None) -> str | None:
    """Return the regex the relay matches event types with, when ``types`` has a pattern.

    One anchored alternative per entry (`producers.names.pattern_regex`); None when every
    entry is a plain event type (the relay compares those as they are).
    """
    if not types or not any("*" in t for t in types):
        return None
    return "|".join(names.pattern_regex(t) for t in types)


def check_filter(value: object) -> Filter | None:
    """Return the parsed filter (None: no filter), else raise InvalidFilter naming the path."""
    return None if value is None else filters.parse(value)


def filter_columns(flt: Filter | None) -> dict[str, Any]:
    """Return the endpoint columns a filter is stored in: as written, and compiled."""
    if flt is None:
        return {"filter": None, "filter_path": None, "filter_vars": None}
    path, variables = compile_path(flt)
    return {"filter": Jsonb(flt.source), "filter_path": path, "filter_vars": Jsonb(variables)}


def check_test_event_type(event_type: str) -> str:
    """Return the event type of an endpoint test, else raise InvalidEvent (a usage error)."""
    try:
        return names.check_event_type(event_type)
    except InvalidEvent:
        raise InvalidEvent(f"event type {event_type!r} is not valid") from None


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Return the custom headers if each may be sent and there are not too many."""
    checked = dict(validate_header(k, v) for k, v in (headers or {}).items())
    if len(checked) > MAX_HEADERS:
        raise InvalidEndpoint(f"at most {MAX_HEADERS} custom headers")
    return checked


def check_ordered(ordered: object) -> bool:
    """Return ``ordered`` if it is a boolean."""
    if not isinstance(ordered, bool):
        raise InvalidEndpoint("ordered must be true or false")
    return ordered


def check_rate_limit(rate_limit: int | None) -> int | None:
    """Return the rate limit if it is a positive integer or None (no limit)."""
    if rate_limit is not None and (
        not isinstance(rate_limit, int) or isinstance(rate_limit, bool) or rate_limit <= 0
    ):
        raise InvalidEndpoint("rate limit must be a positive number of requests per second")
    return rate_limit


def check_description(description: str) -> str:
    """Return the description if it is text of at most 1000 characters."""
    if not isinstance(description, str) or len(description) > 1000:
        raise InvalidEndpoint("description must be text of at most 1000 characters")
    return description


def check_tenant(tenant_id: str) -> str:
    """Return the tenant id if it is one a producer could publish under."""
    try:
        return names.check_tenant(tenant_id)
    except InvalidEvent:
        raise InvalidEndpoint(f"tenant id {tenant_id!r} is not valid") from None


def endpoint_uuid(endpoint_id: str) -> uuid.UUID:
    """Return an endpoint id as a UUID; one that is not a UUID names no endpoint."""
    try:
        return uuid.UUID(str(endpoint_id))
    except ValueError:
        raise NotFound("endpoint", endpoint_id) from None
