"""Configure logging: one record, one physical line, in readable text or JSON.

``WEBHOOKS_LOG_FORMAT`` chooses the format. Either way a record is exactly one line, whatever
it carries: request paths and headers, URLs, a receiver's answer, error and exception
messages all come from outside, and a line break or a terminal escape in them must not
write a line of its own (a forged access line) or rewrite what the operator's terminal
shows.

Text
    ``HH:MM:SS.mmm LEVEL   logger: message key=value ...``. The message (after
    %-formatting) and every field value are escaped here, once, so no caller has to:
    control characters (C0, DEL, C1), line and paragraph separators (U+2028, U+2029),
    invisible format characters (bidirectional overrides, zero-width characters) and lone
    surrogates are written as Python writes them in a ``repr``: ``\\n``, ``\\r``, ``\\t``,
    ``\\x1b``, ``\\u2028``. A field value holding a space, ``=`` or ``"`` is double-quoted
    (``error="read timed out"``), so a value cannot pass for another field. White space at
    the end of a message is dropped. A record may name fields its message already shows
    (``extra={IN_MESSAGE: ("method", "path", "status")}``): the text line says them once,
    the JSON object keeps them as fields.

Exceptions, in text
    An operator at 3 a.m. reads the tail of a log with ``grep``, ``journalctl`` or a log
    shipper, all of which take one line as one record. A traceback of twenty physical lines
    becomes twenty records there, without time or level, interleaved with other threads'
    lines, and ``grep ERROR`` finds only its head. So the record stays on one line: first
    ``exception="psycopg.OperationalError: connection lost"``, what failed, where the eye
    lands; then ``traceback="Traceback (most recent call last):\\n  File ..."``, the whole
    of it (chained causes included), last on the line so it does not push the rest away.
    ``sed 's/\\\\n/\\n/g'`` unfolds it. Python's warnings are one record each too:
    ``DeprecationWarning: text source=file.py:12``.

JSON
    One object per line, the same fields (``exception`` and ``traceback`` included).
    ``json.dumps`` with ``ensure_ascii`` writes every control and non-ASCII character as a
    ``\\u`` escape, U+2028 and U+2029 included, so no reader's line splitting can break an
    object; a number JSON cannot hold (NaN, infinity) is written as a string, so every
    line is strict JSON.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import unicodedata
import warnings
from datetime import UTC, datetime
from typing import Any, TextIO

from worker.settings import LOG_LEVELS

__all__ = ["IN_MESSAGE", "JsonFormatter", "TextFormatter", "configure", "escape"]

#: The ``extra=`` key naming the fields a record's message already shows (text says them once).
IN_MESSAGE = "_in_message"

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# Control (C0, DEL, C1), format (bidirectional overrides, zero-width), surrogate, line and
# paragraph separator: each can end a line, or change what a terminal shows, unseen.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# A field value with one of these is quoted: unquoted it would read as two fields.
_NEEDS_QUOTES = re.compile(r'[\s="]')
_NUMBERS = frozenset({int, float, bool})


def escape(text: str) -> str:
    """Return ``text`` with every character that could end or disguise a line escaped.

    Escapes read as in a Python ``repr``; anything printable, non-ASCII included, is kept.
    """
    if text.isprintable():  # the common case, in C: no control or invisible character
        return text
    return "".join(_escape_char(c) for c in text)


def _escape_char(char: str) -> str:
    if char.isprintable() or unicodedata.category(char) not in _UNSAFE:
        return char  # a space other than U+0020, an unassigned or private character
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _value(value: Any) -> str:
    """Return a field value as text: escaped, and quoted if it holds a space, = or quote."""
    if type(value) in _NUMBERS:  # most fields (ids, counts, durations): nothing to escape
        return str(value)
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return escape(text)
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _exception_only(record: logging.LogRecord) -> str | None:
    """Return what failed, ``module.Type: message``, or None without an exception."""
    if not record.exc_info or record.exc_info[1] is None:
        return None
    exc = record.exc_info[1]
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line, with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        summary = _exception_only(record)
        if summary is not None:
            assert record.exc_info is not None
            out["exception"] = summary
            out["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = record.stack_info
        try:
            return _dumps(out)
        except (TypeError, ValueError):
            # A value JSON cannot write as it is (NaN, a circular list, a tuple as a key).
            return _dumps({k: _plain(v) for k, v in out.items()})


def _dumps(value: Any) -> str:
    # ensure_ascii: U+2028, U+2029 and every control character become \u escapes.
    return json.dumps(value, default=str, ensure_ascii=True, allow_nan=False)


def _plain(value: Any) -> Any:
    """Return ``value`` if JSON can write it as it is, else its text."""
    try:
        _dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


class TextFormatter(logging.Formatter):
    """Format a record as one readable line, extra fields as key=value, everything escaped."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        shown = set(getattr(record, IN_MESSAGE, ()))
        parts = [
            f"{stamp} {escape(record.levelname):<7} {escape(record.name)}:",
            escape(record.getMessage().rstrip()),
        ]
        parts += [
            f"{escape(k)}={_value(v)}"
            for k, v in _fields(record).items()
            if v is not None and k not in shown
        ]
        summary = _exception_only(record)
        if summary is not None:
            assert record.exc_info is not None
            parts.append("exception=" + _value(summary))
            parts.append("traceback=" + _value(self.formatException(record.exc_info)))
        if record.stack_info:
            parts.append("stack=" + _value(record.stack_info))
        return " ".join(p for p in parts if p)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Log a Python warning as one record: its category and text, where it came from."""
    if file is not None:  # written to a file of the caller's choosing, as Python would
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    logging.getLogger("py.warnings").warning(
        "%s: %s", category.__name__, message, extra={"source": f"{filename}:{lineno}"}
    )


def configure(log_format: str = "text", level: int | str = logging.INFO) -> None:
    """Send every log line of the process to stderr in the chosen format.

    The root logger gets the one handler, so Dramatiq's loggers and any library's warnings
    share the product's format; `webhooks` logs from ``level`` (a number or a
    WEBHOOKS_LOG_LEVEL name), `dramatiq` from ``level`` but never below INFO (its DEBUG is
    a line per message), the others from WARNING. Python's warnings go through logging
    too, one record each.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    number = level if isinstance(level, int) else LOG_LEVELS[level]
    for name, floor in (("webhooks", number), ("dramatiq", max(number, logging.INFO))):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(floor)
        logger.propagate = True
    warnings.showwarning = _show_warning
    # httpx logs every request at INFO: a second, unstructured line per delivery.
    logging.getLogger("httpx").setLevel(logging.WARNING)
