"""Sign deliveries the Standard Webhooks way.

Wire format (guaranteed by the delivery rules): ``webhook-signature`` holds one
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` per valid secret, space separated,
so receivers keep verifying while a secret rotates. Secrets are ``whsec_`` + base64.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Sequence

from worker.errors import InvalidEndpoint

__all__ = [
    "SECRET_PREFIX",
    "decode_secret",
    "generate_secret",
    "sign",
    "signature_header",
    "verify",
]

SECRET_PREFIX = "whsec_"

# The Standard Webhooks specification asks for keys of 24 to 64 bytes; shorter ones are
# guessable and longer ones are almost always a pasted mistake.
_MIN_KEY_BYTES = 24
_MAX_KEY_BYTES = 64


def generate_secret() -> str:
    """Return a new secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """Return the key bytes of a secret, with or without its ``whsec_`` prefix.

    Raises InvalidEndpoint when the rest is not base64 of 24 to 64 bytes.
    """
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    # Other implementations accept unpadded base64 (standardwebhooks appends "=="), so a
    # secret copied from them must decode here too.
    text += "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEndpoint("secret is not valid: expected 'whsec_' followed by base64") from exc
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise InvalidEndpoint(
            f"secret is not valid: its key is {len(key)} bytes,"
            f" expected {_MIN_KEY_BYTES} to {_MAX_KEY_BYTES}"
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return ``v1,<signature>`` of one message under one key."""
    # hmac.digest is OpenSSL's one-shot HMAC: a third of hmac.new(...).digest()'s time.
    digest = hmac.digest(key, f"{msg_id}.{timestamp}.".encode() + body, "sha256")
    return "v1," + binascii.b2a_base64(digest, newline=False).decode("ascii")


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` value: one signature per key, space separated."""
    if not keys:
        raise ValueError("at least one signing key is needed")
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def verify(
    secret: str,
    msg_id: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Tell whether any ``v1`` signature in ``header`` matches, within ``tolerance`` seconds.

    This is what a receiver does; the demo receiver of `webhooks dev` uses it.
    """
    try:
        stamp = int(timestamp)
        key = decode_secret(secret)
    except (ValueError, InvalidEndpoint):
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = sign(key, msg_id, stamp, body)
    return any(hmac.compare_digest(expected, given) for given in header.split(" "))
