"""The caller's OpenTelemetry trace context, stored with each event it publishes.

When the OpenTelemetry API is installed (the ``otel`` extra brings it) and a span is current
where `publish` is called, its W3C trace context (``traceparent``, and ``tracestate`` when
set) is stored in the event's ``trace_context`` column; the relay and the workers make their
spans children of it (`worker.observe.tracing`). Baggage is never stored: it may carry what
the application did not mean to keep.

Free when OpenTelemetry is not installed: the import is tried once, on the first publish,
never by `import producers`. With it installed and no span current, one function call.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["current"]

#: OpenTelemetry's trace API and W3C propagator, once loaded (None without OpenTelemetry).
_otel: tuple[Any, Any] | None = None
_tried = False


def _load() -> tuple[Any, Any] | None:
    global _otel, _tried
    if not _tried:
        _tried = True
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            return None
        _otel = (trace, TraceContextTextMapPropagator())
    return _otel


def current() -> str | None:
    """Return the current span's W3C trace context as a JSON object's text, or None."""
    otel = _load()
    if otel is None:
        return None
    trace, propagator = otel
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagator.inject(carrier)
    return json.dumps(carrier, separators=(",", ":")) if carrier else None
