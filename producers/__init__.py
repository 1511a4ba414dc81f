"""Publish webhook events into the caller's Postgres transaction (the transactional outbox).

```python
from producers import publish
with conn.transaction():
    conn.execute("insert into invoices ...")
    event_id = publish(conn, "invoice.paid", {"invoice": 42}, tenant_id="acme")
```

Payloads larger than ``max_payload_bytes`` are refused; without that argument the limit is
WEBHOOKS_MAX_PAYLOAD_BYTES, read by `producers.publish.max_payload_bytes_from_env` (the one
place this library reads the environment).
"""

from producers.errors import (
    InvalidEvent,
    InvalidPayload,
    InvalidSchema,
    NotInTransaction,
    PayloadMismatch,
    PayloadTooLarge,
    PublishError,
    UnsupportedConnection,
    WebhooksError,
)
from producers.publish import Event, apublish, publish, publish_many

__all__ = [
    "Event",
    "InvalidEvent",
    "InvalidPayload",
    "InvalidSchema",
    "NotInTransaction",
    "PayloadMismatch",
    "PayloadTooLarge",
    "PublishError",
    "UnsupportedConnection",
    "WebhooksError",
    "apublish",
    "publish",
    "publish_many",
]
