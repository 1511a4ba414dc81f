"""Which custom headers may travel with every delivery: one rule for create and send.

Delivery rule kept here: a header is sent only if its name is an HTTP token and its value
is one the HTTP client can write as it is. RFC 9110 allows a field value of visible ASCII,
SP, HTAB and obs-text (bytes 0x80-0xFF); aiohttp refuses every other control character
(``ValueError: Forbidden control character``) and would write anything beyond ASCII as
UTF-8, not as the obs-text bytes a receiver reads. So a value is visible ASCII, SP and
HTAB, nothing else. The checks when an endpoint is set (`worker.ops.validation`) and the
building of each attempt's request (`worker.delivery.request`) both apply `unsendable`, so no
header accepted at create fails every attempt.
"""

from __future__ import annotations

import re

__all__ = ["FIELD_VALUE", "RESERVED_HEADERS", "TOKEN", "is_token", "unsendable"]

# Headers the delivery itself sets or that belong to the connection: never overridable.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "user-agent",
        "expect",
    }
)

#: A header name: an HTTP token (RFC 9110 section 5.6.2).
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A header value: field-vchar (without obs-text), SP and HTAB (RFC 9110 section 5.5).
FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def is_token(name: str) -> bool:
    """Return whether ``name`` is an HTTP token (RFC 9110 section 5.6.2), as a name must be."""
    return TOKEN.fullmatch(name) is not None


def unsendable(name: str, value: str) -> str | None:
    """Return why the header ``name: value`` cannot be sent as it is, else None."""
    if not is_token(name):
        return "name is not a valid HTTP token"
    if FIELD_VALUE.fullmatch(value) is not None:
        return None
    if not value.isascii():
        return "value must be ASCII text"
    return "value holds a control character (only visible ASCII, space and tab are sent)"
