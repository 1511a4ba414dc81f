"""Errors raised by the webhooks libraries.

Every error the product raises on purpose derives from one root::

    WebhooksError
    ├── PublishError                 publish() refused its input; nothing was written
    │   ├── InvalidEvent             event type, tenant, idempotency or ordering key malformed
    │   │   └── UnknownEventType     not in the catalogue, or archived (EVENT_TYPES=known)
    │   ├── InvalidPayload           payload not JSON-serialisable (or not storable)
    │   │   └── PayloadMismatch      payload does not match its event type's JSON Schema
    │   ├── PayloadTooLarge          payload over WEBHOOKS_MAX_PAYLOAD_BYTES
    │   ├── UnsupportedConnection    not a connection this publisher writes through
    │   └── NotInTransaction         autocommit outside a transaction block, or a failed one
    ├── InvalidSchema                a JSON Schema that is not one (or refers outside itself)
    ├── ExtraNotInstalled            producers.django, .sqlalchemy or .otel without its extra
    └── (worker.errors adds the service-side errors)

`producers` keeps only the part of the tree the producer API raises, so that importing it
pulls in nothing but psycopg.

UnsupportedConnection and NotInTransaction are raised the same way by every publisher:
psycopg 3 (`producers`), Django (`producers.django`) and SQLAlchemy (`producers.sqlalchemy`).
"""

from __future__ import annotations


class WebhooksError(Exception):
    """Root of every error the webhooks packages raise on purpose."""


class PublishError(WebhooksError, ValueError):
    """Refuse an event before anything is written."""


class InvalidEvent(PublishError):
    """Reject a malformed event type, tenant id, idempotency key or ordering key."""


class InvalidPayload(PublishError):
    """Reject a payload that cannot be stored as JSON."""


class UnknownEventType(InvalidEvent):
    """Refuse an event type the catalogue does not have, or has archived."""

    def __init__(self, event_type: str, *, archived: bool) -> None:
        why = "is archived in" if archived else "is not in"
        super().__init__(
            f"event type {event_type!r} {why} the event-type catalogue (WEBHOOKS_EVENT_TYPES=known)"
        )
        self.event_type = event_type
        self.archived = archived


class PayloadMismatch(InvalidPayload):
    """Reject a payload its event type's JSON Schema does not accept."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class InvalidSchema(WebhooksError, ValueError):
    """Refuse a JSON Schema that is not valid, too deep, or refers to a remote document."""


class PayloadTooLarge(PublishError):
    """Reject a payload larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class UnsupportedConnection(PublishError, TypeError):
    """Reject a connection the publisher cannot write through (not Postgres, another driver)."""


class NotInTransaction(PublishError):
    """Refuse to publish outside a transaction the caller controls."""


class ExtraNotInstalled(WebhooksError, ImportError):
    """Say which extra to install when an optional module's library is missing."""

    def __init__(self, module: str, library: str, extra: str) -> None:
        super().__init__(
            f"{module} needs {library}, which is not installed: "
            f"pip install 'webhooks-outbox[{extra}]'"
        )
        self.module = module
        self.extra = extra
