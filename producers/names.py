"""The rules for event types and tenant ids: what `publish` accepts, and every validator.

Endpoints, API keys, portal links, the API's schema and the settings check names with these,
so a name accepted anywhere is one a producer could publish under.
"""

from __future__ import annotations

import re

from producers.errors import InvalidEvent

__all__ = [
    "EVENT_TYPE",
    "MAX_EVENT_TYPE",
    "MAX_TENANT",
    "TENANT",
    "check_event_pattern",
    "check_event_type",
    "check_tenant",
    "pattern_matches",
    "pattern_regex",
]

MAX_EVENT_TYPE = 255
MAX_TENANT = 128
#: An event type: a letter or digit, then letters, digits and ``_ . : / -``.
EVENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
#: A tenant id: a letter or digit, then letters, digits and ``_ . : -``.
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def check_event_type(value: object) -> str:
    """Return ``value`` if it is a valid event type, else raise InvalidEvent saying why."""
    return _check("event type", value, EVENT_TYPE, MAX_EVENT_TYPE, "_ . : / -")


def check_event_pattern(value: object) -> str:
    """Return ``value`` if an endpoint may subscribe with it, else raise InvalidEvent.

    An event type, one in which whole ``.``-separated segments are ``*`` (any one segment:
    ``order.*`` takes ``order.paid``, not ``order.paid.late`` nor ``order``), or ``*`` alone
    (every type).
    """
    if value == "*":
        return value
    if isinstance(value, str) and "*" in value:
        if any(segment != "*" and "*" in segment for segment in value.split(".")):
            raise InvalidEvent(f"event type pattern {value!r}: `*` must be a whole segment")
        check_event_type(value.replace("*", "x"))
        return value
    return check_event_type(value)


def pattern_regex(pattern: str) -> str:
    """Return the anchored regular expression of a checked pattern.

    The same text is a Python `re` and a Postgres ``~`` expression, so the relay's statement
    and `pattern_matches` decide alike.
    """
    if pattern == "*":
        return "^.*$"
    segments = ("[^.]+" if s == "*" else re.escape(s) for s in pattern.split("."))
    return "^" + "\\.".join(segments) + "$"


def pattern_matches(pattern: str, event_type: str) -> bool:
    """Tell whether a checked subscription pattern (or plain event type) takes ``event_type``."""
    if "*" not in pattern:
        return pattern == event_type
    return re.match(pattern_regex(pattern), event_type) is not None


def check_tenant(value: object) -> str:
    """Return ``value`` if it is a valid tenant id, else raise InvalidEvent saying why."""
    return _check("tenant id", value, TENANT, MAX_TENANT, "_ . : -")


def _check(kind: str, value: object, pattern: re.Pattern[str], limit: int, allowed: str) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidEvent(f"{kind} is empty")
    if len(value) > limit:
        raise InvalidEvent(f"{kind} is {len(value)} characters, over the limit of {limit}")
    if not pattern.fullmatch(value):
        raise InvalidEvent(
            f"{kind} {value!r} must start with a letter or digit and use only letters,"
            f" digits and {allowed}"
        )
    return value
