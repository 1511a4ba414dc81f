"""Build one attempt's request: the Standard Webhooks body, headers and signature keys.

Pure functions over the claimed delivery; the wire format is the one the README's Delivery
rules describe.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.policy import signing
from worker.policy.headers import RESERVED_HEADERS, unsendable
from worker.store.vault import Vault

__all__ = [
    "MAX_RESPONSE_BYTES",
    "RESERVED_HEADERS",
    "USER_AGENT",
    "envelope",
    "request_headers",
    "valid_keys",
]

USER_AGENT = "webhooks-outbox/0.1 (+Standard Webhooks)"
MAX_RESPONSE_BYTES = 16384


def envelope(event_type: str, created_at: datetime, payload_json: str) -> bytes:
    """Return the Standard Webhooks body; the stored payload JSON is spliced in as it is."""
    stamp = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return (
        f'{{"type":{_json_string(event_type)},"timestamp":"{stamp}","data":{payload_json}}}'
    ).encode()


@functools.lru_cache(maxsize=1024)
def _json_string(text: str) -> str:
    # A process sends a handful of event types, each thousands of times.
    return json.dumps(text)


def request_headers(
    custom: Mapping[str, str], event_id: str, timestamp: int, signature: str
) -> dict[str, str]:
    """Return the headers of one attempt; the delivery's own always win over custom ones.

    Raises ValueError for a custom header that cannot be sent (`worker.policy.headers`;
    stored before the registry refused such values): the attempt fails, recorded, before
    any connection is made.
    """
    headers = {
        k: v
        for k, v in custom.items()
        if not k.lower().startswith("webhook-") and k.lower() not in RESERVED_HEADERS
    }
    for name, value in headers.items():
        problem = unsendable(name, value)
        if problem is not None:
            raise ValueError(f"header {name!r} cannot be sent: {problem}")
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
    )
    return headers


def valid_keys(secrets: Sequence[Mapping[str, Any]], vault: Vault, now: datetime) -> list[bytes]:
    """Return the signing keys of every secret not yet expired (several during rotation)."""
    keys = []
    for entry in secrets:
        expires = entry.get("expires_at")
        if expires is not None and datetime.fromisoformat(expires) <= now:
            continue
        keys.append(_key(vault.open(entry["secret"])))
    return keys


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    # Every attempt to an endpoint signs with the same secrets: decode each once per process.
    # (A secret that does not decode raises, and is not cached.)
    return signing.decode_secret(secret)
