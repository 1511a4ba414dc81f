"""Mask secret-bearing values for display: endpoint custom headers in lists, shows and logs.

Custom headers usually carry the receiver's credentials (``Authorization: Bearer ...``), so
only their start is ever shown after they are written: enough for an operator to recognise
the scheme or the key's prefix, never enough to use it. The full value appears only in the
answer to the request that set it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MARKER", "MIN_SHOWN_LENGTH", "SHOWN", "redact", "redact_headers"]

#: What stands for the hidden part of a value.
MARKER = "(redacted)"
#: Characters shown at the start of a long value (``Bear`` of ``Bearer ...``).
SHOWN = 4
#: Values shorter than this are hidden whole: four characters of a short token would give
#: away too large a share of it.
MIN_SHOWN_LENGTH = 16


def redact(value: str) -> str:
    """Return ``value`` with all but its first few characters replaced by a marker.

    ``"Bearer 0123456789abcdef"`` becomes ``"Bear…(redacted)"``; a value shorter than
    `MIN_SHOWN_LENGTH` becomes ``"(redacted)"``; an empty value, which hides nothing, stays
    empty.
    """
    if not value:
        return ""
    if len(value) < MIN_SHOWN_LENGTH:
        return MARKER
    return value[:SHOWN] + "…" + MARKER


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the headers with every value redacted; the names stay readable."""
    return {name: redact(value) for name, value in headers.items()}
