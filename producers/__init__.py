"""Publish webhook events into the caller's Postgres transaction (the transactional outbox).

```python
from producers import publish
with conn.transaction():
    conn.execute("insert into invoices ...")
    event_id = publish(conn, "invoice.paid", {"invoice": 42}, tenant_id="acme")
```

Payloads larger than ``max_payload_bytes`` are refused; without that argument the limit is
WEBHOOKS_MAX_PAYLOAD_BYTES. With ``event_types="known"`` (else WEBHOOKS_EVENT_TYPES) a type
missing from the event-type catalogue, or archived there, is refused (UnknownEventType);
with ``validate="warn"`` or ``"reject"`` (else WEBHOOKS_VALIDATE_PAYLOADS) each payload is
checked against its type's latest JSON Schema (PayloadMismatch). `producers.settings` is the
one module of this library that reads the environment.

The same API writes through Django's connection (`producers.django`, the ``django`` extra)
and SQLAlchemy sessions and connections (`producers.sqlalchemy`, the ``sqlalchemy`` extra);
those modules import their framework, `import producers` does not.
"""

from producers.errors import (
    ExtraNotInstalled,
    InvalidEvent,
    InvalidPayload,
    InvalidSchema,
    NotInTransaction,
    PayloadMismatch,
    PayloadTooLarge,
    PublishError,
    UnknownEventType,
    UnsupportedConnection,
    WebhooksError,
)
from producers.publish import Event, apublish, publish, publish_many

__all__ = [
    "Event",
    "ExtraNotInstalled",
    "InvalidEvent",
    "InvalidPayload",
    "InvalidSchema",
    "NotInTransaction",
    "PayloadMismatch",
    "PayloadTooLarge",
    "PublishError",
    "UnknownEventType",
    "UnsupportedConnection",
    "WebhooksError",
    "apublish",
    "publish",
    "publish_many",
]
