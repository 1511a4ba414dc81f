"""The producers library's settings: the only module of `producers` that reads the environment.

A `publish` call given no ``max_payload_bytes=``, ``event_types=`` or ``validate=`` reads the
variable here, on every call, so a changed environment applies at once (each read costs well
under a microsecond). The worker builds its own `worker.settings.Settings` and passes the
values explicitly; it shares the checks of the values below.

- WEBHOOKS_MAX_PAYLOAD_BYTES: the largest payload, in bytes (default 262144).
- WEBHOOKS_EVENT_TYPES: ``open`` (any well-formed type) or ``known`` (only types in the
  catalogue, ``webhooks.event_types``, and not archived).
- WEBHOOKS_VALIDATE_PAYLOADS: ``off``, ``warn`` or ``reject``: check each payload against its
  type's latest JSON Schema and log a warning, or refuse it.

A malformed value is refused with InvalidEvent naming the variable (nothing is written).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, TypeVar, cast

from producers.errors import InvalidEvent

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "EVENT_TYPES",
    "VALIDATE_PAYLOADS",
    "EventTypes",
    "ValidatePayloads",
    "check_event_types",
    "check_validate_payloads",
    "event_types_from_env",
    "max_payload_bytes_from_env",
    "refused_as_invalid",
    "validate_payloads_from_env",
]

DEFAULT_MAX_PAYLOAD_BYTES = 262144

T = TypeVar("T")

EventTypes = Literal["open", "known"]
ValidatePayloads = Literal["off", "warn", "reject"]
#: The values of WEBHOOKS_EVENT_TYPES, the default first.
EVENT_TYPES: tuple[EventTypes, ...] = ("open", "known")
#: The values of WEBHOOKS_VALIDATE_PAYLOADS, the default first.
VALIDATE_PAYLOADS: tuple[ValidatePayloads, ...] = ("off", "warn", "reject")


def check_event_types(value: object) -> EventTypes:
    """Return ``value`` if it is ``open`` or ``known``, else raise ValueError saying so."""
    return cast(EventTypes, _one_of(value, EVENT_TYPES))


def check_validate_payloads(value: object) -> ValidatePayloads:
    """Return ``value`` if it is ``off``, ``warn`` or ``reject``, else raise ValueError."""
    return cast(ValidatePayloads, _one_of(value, VALIDATE_PAYLOADS))


def _one_of(value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        *first, last = (repr(a) for a in allowed)
        raise ValueError(f"must be {', '.join(first)} or {last}, got {value!r}")
    return value


def max_payload_bytes_from_env() -> int:
    """Return WEBHOOKS_MAX_PAYLOAD_BYTES, else DEFAULT_MAX_PAYLOAD_BYTES."""
    raw = os.environ.get("WEBHOOKS_MAX_PAYLOAD_BYTES", "")
    try:
        return int(raw) if raw else DEFAULT_MAX_PAYLOAD_BYTES
    except ValueError:
        raise InvalidEvent(f"WEBHOOKS_MAX_PAYLOAD_BYTES: not an integer: {raw!r}") from None


def event_types_from_env() -> EventTypes:
    """Return WEBHOOKS_EVENT_TYPES, else ``open``."""
    raw = os.environ.get("WEBHOOKS_EVENT_TYPES", "")
    if not raw:
        return "open"
    return refused_as_invalid("WEBHOOKS_EVENT_TYPES", raw, check_event_types)


def validate_payloads_from_env() -> ValidatePayloads:
    """Return WEBHOOKS_VALIDATE_PAYLOADS, else ``off``."""
    raw = os.environ.get("WEBHOOKS_VALIDATE_PAYLOADS", "")
    if not raw:
        return "off"
    return refused_as_invalid("WEBHOOKS_VALIDATE_PAYLOADS", raw, check_validate_payloads)


def refused_as_invalid(name: str, raw: object, check: Callable[[object], T]) -> T:
    """Return ``check(raw)``; its ValueError becomes InvalidEvent naming ``name``."""
    try:
        return check(raw)
    except ValueError as exc:
        raise InvalidEvent(f"{name}: {exc}") from None
