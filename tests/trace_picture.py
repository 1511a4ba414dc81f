"""Print the spans of one event's life as a tree: the README's trace, from a real run.

    python -m tests.trace_picture

A database of its own (see tests/publish_rates.py), a redis-server of its own, the real relay
and worker in this process with tracing on (an in-memory exporter), and a receiver that
fails the first attempt. A span stands for the application's request; the event published
inside it is delivered on the second attempt. Prints each span with its start (ms after the
request began), duration and chosen attributes, children indented under their parent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.daemons import eventually
from tests.pipeline import Pipeline
from tests.publish_rates import database, order
from tests.receiver import fail_first, running_receiver
from tests.services import RedisServer
from worker.observe.tracing import Tracing

SHOWN = (
    "webhooks.event.type",
    "webhooks.deliveries",
    "webhooks.attempt.number",
    "webhooks.attempt.trigger",
    "http.response.status_code",
    "webhooks.attempt.error_kind",
)


def render(spans: list[ReadableSpan]) -> list[str]:
    """Return one line per span, depth-first, children in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    root_start = min(s.start_time or 0 for s in spans)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time or 0):
            start = ((span.start_time or 0) - root_start) / 1e6
            took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            attrs: dict[str, Any] = dict(span.attributes or {})
            shown = " ".join(f"{k.rsplit('.', 1)[-1]}={attrs[k]}" for k in SHOWN if k in attrs)
            name = "  " * depth + span.name
            lines.append(f"{name:<26} {span.kind.name:<8} +{start:8.1f} ms {took:7.1f} ms  {shown}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="webhooks-trace-redis-")))
    try:
        with database() as url, running_receiver() as receiver:
            pipeline = Pipeline(url, redis_server.url(), retry_schedule=(0, 0.5, 1.0))
            pipeline.tracing = Tracing(provider, traceparent=True)
            try:
                pipeline.endpoint(receiver.on("/hooks", fail_first(1)))
                pipeline.start_relay()
                pipeline.start_worker()
                tracer = provider.get_tracer("shop")
                with tracer.start_as_current_span("POST /orders/42/pay"):
                    pipeline.publish("order.paid", order(42), tenant_id="default")
                receiver.wait_for("/hooks", 2)
                pipeline.settle()

                def finished() -> list[ReadableSpan]:
                    spans = exporter.get_finished_spans()
                    assert sum(s.name == "webhooks attempt" for s in spans) == 2
                    return list(spans)

                spans = eventually(finished)
            finally:
                pipeline.stop()
    finally:
        redis_server.stop()
    trace_id = next(s for s in spans if s.name.startswith("POST")).context.trace_id
    print(f"trace {trace_id:032x}")
    for line in render([s for s in spans if s.context.trace_id == trace_id]):
        print(line)


if __name__ == "__main__":
    main()
