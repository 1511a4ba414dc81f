"""OpenTelemetry: publish() stores the caller's trace context; the relay's fan-out and every
attempt are spans of that trace; `traceparent` goes to receivers only when asked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from producers import publish, publish_many
from producers import sqlalchemy as via_sqlalchemy
from tests.daemons import Daemon, base_env, eventually, free_port
from tests.pipeline import Pipeline
from tests.receiver import Receiver, fail_first
from worker.observe.tracing import Tracing


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """The application's tracer provider: its spans go to ``exporter``."""
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    return made


def stored(db_url: str) -> dict[str, Any]:
    """Return event type -> stored trace context of every committed event."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("select event_type, trace_context from webhooks.outbox").fetchall()
    return dict(rows)


def traceparent(span: Any) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_publish_stores_the_current_span_as_its_trace_context(
    db_url: str, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("shop")
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with psycopg.connect(db_url) as conn:
        with tracer.start_as_current_span("POST /checkout") as span:
            publish(conn, "traced.one", {})
            publish_many(conn, [("traced.many", {})])
            with Session(engine) as session, session.begin():
                via_sqlalchemy.publish_many(session, [("traced.sqlalchemy", {})])
        publish(conn, "untraced", {})
        # A tracestate from upstream travels with the context; baggage is never stored.
        upstream = TraceContextTextMapPropagator().extract(
            {"traceparent": traceparent(span), "tracestate": "shop=1"}
        )
        with tracer.start_as_current_span("worker job", context=upstream) as child:
            publish(conn, "traced.state", {})
        conn.commit()
    engine.dispose()
    found = stored(db_url)
    expected = {"traceparent": traceparent(span)}
    assert found["traced.one"] == found["traced.many"] == found["traced.sqlalchemy"] == expected
    assert found["untraced"] is None
    assert found["traced.state"] == {"traceparent": traceparent(child), "tracestate": "shop=1"}


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def wait_spans(exporter: InMemorySpanExporter, name: str, count: int) -> list[ReadableSpan]:
    """Wait until ``count`` spans named ``name`` have ended (an attempt's span ends after its
    delivery is recorded: the pipeline can settle first)."""

    def enough() -> list[ReadableSpan]:
        found = spans_named(exporter, name)
        assert len(found) >= count, found
        return found

    return eventually(enough)


def test_fan_out_and_attempts_are_spans_of_the_publishers_trace(
    pipeline: Pipeline, receiver: Receiver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    p = pipeline
    p.tracing = Tracing(provider, traceparent=True)
    flaky, _ = p.endpoint(receiver.on("/flaky", fail_first(1)))
    p.start_relay()
    p.start_worker()
    with provider.get_tracer("shop").start_as_current_span("POST /orders") as request:
        traced = p.publish("order.paid", {"order": 1})
    untraced = p.publish("order.paid", {"order": 2})

    got = receiver.wait_for("/flaky", 3)
    p.settle()
    wait_spans(exporter, "webhooks attempt", 3)
    trace_id = request.get_span_context().trace_id

    (fan_out,) = [
        s for s in spans_named(exporter, "webhooks fan-out") if s.context.trace_id == trace_id
    ]
    assert (
        fan_out.parent is not None and fan_out.parent.span_id == request.get_span_context().span_id
    )
    assert fan_out.kind is SpanKind.PRODUCER
    assert fan_out.attributes is not None
    assert fan_out.attributes["webhooks.event.id"] == traced
    assert fan_out.attributes["webhooks.deliveries"] == 1

    attempts = sorted(
        (s for s in spans_named(exporter, "webhooks attempt") if s.context.trace_id == trace_id),
        key=lambda s: s.start_time or 0,
    )
    assert [s.attributes and s.attributes["webhooks.attempt.number"] for s in attempts] == [1, 2]
    first, second = (dict(s.attributes or {}) for s in attempts)
    assert first["http.response.status_code"] == 500
    assert first["webhooks.attempt.error_kind"] == "http_status"
    assert first["error.type"] == "http_status"
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert second["http.response.status_code"] == 200 and "error.type" not in second
    for attrs in (first, second):
        assert attrs["webhooks.endpoint.id"] == flaky
        assert attrs["webhooks.event.id"] == traced
        assert attrs["webhooks.attempt.trigger"] == "scheduled"
        assert attrs["webhooks.attempt.duration_seconds"] >= 0
        assert attrs["server.address"] == "127.0.0.1"
    for span in attempts:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id

    # Each request carried its own attempt span's traceparent.
    mine = [r for r in got if r.headers["webhook-id"] == traced]
    assert sorted(r.headers["traceparent"] for r in mine) == sorted(
        traceparent(s) for s in attempts
    )
    # An event published with no span current starts a trace of its own.
    (alone,) = [
        s
        for s in spans_named(exporter, "webhooks attempt")
        if (s.attributes or {}).get("webhooks.event.id") == untraced
    ]
    assert alone.parent is None and alone.context.trace_id != trace_id


def test_receivers_get_no_traceparent_unless_asked(
    pipeline: Pipeline, receiver: Receiver, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    pipeline.tracing = Tracing(provider)  # WEBHOOKS_TRACEPARENT off, the default
    pipeline.endpoint(receiver.url("/hooks"))
    pipeline.start_relay()
    pipeline.start_worker()
    with provider.get_tracer("shop").start_as_current_span("POST /orders"):
        pipeline.publish("order.paid", {"order": 1})
    (request,) = receiver.wait_for("/hooks", 1)
    assert "traceparent" not in request.headers and "tracestate" not in request.headers
    wait_spans(exporter, "webhooks attempt", 1)


class Collector:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent (protobuf)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []  # (service.name, span)
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        attrs = {
                            a.key: a.value.string_value for a in resource_spans.resource.attributes
                        }
                        for scope in resource_spans.scope_spans:
                            collector.spans += [(attrs["service.name"], s) for s in scope.spans]
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.stop()


def test_the_daemons_export_their_spans_over_otlp_as_otel_variables_say(
    db_url: str,
    redis_url: str,
    receiver: Receiver,
    collector: Collector,
    provider: TracerProvider,
    tmp_path: Path,
) -> None:
    p = Pipeline(db_url, redis_url)  # only its connection and helpers: the daemons run below
    p.endpoint(receiver.url("/hooks"))
    env = base_env(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOKS_TRACEPARENT="on",
        WEBHOOKS_METRICS_PORT=str(free_port()),
        WEBHOOKS_RELAY_METRICS_PORT=str(free_port()),
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    relay = Daemon(["relay"], env, tmp_path / "relay.log")
    worker = Daemon(["worker", "--processes", "1", "--threads", "2"], env, tmp_path / "worker.log")
    try:
        with provider.get_tracer("shop").start_as_current_span("POST /orders") as request:
            event_id = p.publish("order.paid", {"order": 1})
        (delivered,) = receiver.wait_for("/hooks", 1, timeout=60)
        trace_id = request.get_span_context().trace_id

        def exported() -> dict[str, tuple[str, Any]]:
            with collector.lock:
                ours = {s.name: (service, s) for service, s in collector.spans}
            assert {"webhooks fan-out", "webhooks attempt"} <= set(ours), ours.keys()
            return ours

        spans = eventually(exported, timeout=30)
    finally:
        worker.stop()
        relay.stop()
        p.stop()
    relay_service, fan_out = spans["webhooks fan-out"]
    worker_service, attempt = spans["webhooks attempt"]
    assert (relay_service, worker_service) == ("webhooks-relay", "webhooks-worker")
    for span in (fan_out, attempt):
        assert int.from_bytes(span.trace_id, "big") == trace_id
        assert int.from_bytes(span.parent_span_id, "big") == request.get_span_context().span_id
    attrs = {a.key: a.value for a in attempt.attributes}
    assert attrs["webhooks.event.id"].string_value == event_id
    assert attrs["http.response.status_code"].int_value == 200
    span_id = f"{int.from_bytes(attempt.span_id, 'big'):016x}"
    assert delivered.headers["traceparent"].startswith(f"00-{trace_id:032x}-{span_id}-")
    assert json.loads(delivered.body)["data"] == {"order": 1}
