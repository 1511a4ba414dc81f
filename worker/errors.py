"""Errors raised by the relay, the workers and the command line.

The tree continues the one in `producers.errors` under the same root::

    WebhooksError
    ├── PublishError ...            (see producers.errors)
    ├── ConfigError                 a setting is missing or malformed (names the variable)
    ├── MigrationError              schema missing, behind, or an applied file was edited
    ├── NotFound                    an id names no row (in the caller's tenant)
    ├── WrongState                  the row is not in a state the operation applies to
    ├── InvalidEndpoint             URL, header, rate limit or secret rejected
    ├── DatabaseError               Postgres failed; carries the sqlstate
    └── BlockedDestination          the SSRF guard refused every address of a host

Driver errors are wrapped at the boundary with ``raise ... from exc``. An error whose message
tells what to run next (a `webhooks` command) is `Advised`: it carries the same advice worded
for an HTTP client too (``api``, naming routes), which the management API answers with.
"""

from __future__ import annotations

from producers.errors import (
    InvalidEvent,
    InvalidPayload,
    NotInTransaction,
    PayloadTooLarge,
    PublishError,
    UnknownEventType,
    UnsupportedConnection,
    WebhooksError,
)

__all__ = [
    "Advised",
    "BlockedDestination",
    "ConfigError",
    "DatabaseError",
    "InvalidEndpoint",
    "InvalidEvent",
    "InvalidPayload",
    "MigrationError",
    "NotFound",
    "NotInTransaction",
    "PayloadTooLarge",
    "PublishError",
    "UnknownEventType",
    "UnsupportedConnection",
    "WebhooksError",
    "WrongState",
]


class Advised(WebhooksError):
    """An error whose message names the command to run next; ``api`` names the route instead."""

    def __init__(self, message: str, *, api: str | None = None) -> None:
        super().__init__(message)
        self.api = message if api is None else api


class ConfigError(WebhooksError):
    """Report a missing or malformed setting; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class MigrationError(Advised):
    """Report a schema that is missing, behind, or whose applied files were edited."""


class NotFound(WebhooksError, LookupError):
    """Report an id that names no row visible to the caller."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"no {kind} with id {ident}")
        self.kind = kind
        self.ident = ident


class WrongState(Advised):
    """Refuse an operation the row's state rules out; the message names what to do instead."""


class InvalidEndpoint(Advised, ValueError):
    """Reject an endpoint URL, header, rate limit or secret."""


class DatabaseError(WebhooksError):
    """Wrap a Postgres failure, keeping its sqlstate for the operator."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message if not sqlstate else f"{message} (sqlstate {sqlstate})")
        self.sqlstate = sqlstate


class BlockedDestination(WebhooksError):
    """Refuse a destination whose addresses are not allowed (SSRF guard)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"destination {host} blocked: {reason}")
        self.host = host
        self.reason = reason
