"""OpenTelemetry spans for the relay's fan-out and each attempt, in the publisher's trace.

`publish()` stores the trace context of the span current where it was called
(`producers.tracing`, the outbox's ``trace_context``). With tracing on, the relay and the
workers make their spans children of it, so one trace runs from the request that published
an event to every attempt that delivered it:

- ``webhooks fan-out`` (PRODUCER), one per traced event of a relayed batch, from the start of
  the batch to its push: the event, its tenant and type, how many deliveries it got.
- ``webhooks attempt`` (CLIENT), one per HTTP attempt, timed as the attempt row is: endpoint,
  delivery, event, attempt number, trigger, status code, error kind, outcome, duration.
  With WEBHOOKS_TRACEPARENT=on the request carries the attempt span's ``traceparent`` (and
  ``tracestate``), so a traced receiver continues the same trace.

An event published with no span current has no context: its spans start traces of their
own. The SDK samples as OTEL_TRACES_SAMPLER says (parent-based by default: an unsampled
publisher's events are not recorded).

Hooks, not rewrites: the relay calls `Tracing.fanned_out` through ``Relay.on_fan_out``; the
engine calls `claimed` and `attempt`, which `Off` (the default) answers with nothing. The
trace contexts are read by statements of their own (`worker.store.traces`), one per relayed
batch and one per claimed batch, only when tracing is on.

Built by `worker.app.App.tracing` from the settings (`from_settings`): the OTEL_* variables
say whether to trace and how to export (`worker.settings.traces_exporters`); the SDK reads
the rest itself (endpoint, headers, service name, resource, sampler, batching).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import psycopg

from worker.delivery.attempt import Finished
from worker.delivery.request import USER_AGENT
from worker.errors import ConfigError
from worker.policy import plan
from worker.policy.outcome import Kind
from worker.settings import Settings
from worker.store import traces

__all__ = ["OFF", "Attempt", "Off", "Tracing", "from_settings"]

log = logging.getLogger("webhooks.tracing")

#: The instrumentation scope of every span.
SCOPE = "webhooks-outbox"
#: Events whose trace context the engine remembers (their deliveries may be attempted later
#: than they were claimed, or more than once a batch).
REMEMBERED = 65536
#: Seconds a trace-context lookup is retried through a Postgres outage: not long, a span
#: without its parent is better than a delivery waiting.
LOOKUP_PATIENCE = 2.0

T = TypeVar("T")


class Runner(Protocol):
    """What the engine runs its statements with (`worker.engine.database.Database`)."""

    def run(
        self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], patience: float
    ) -> Awaitable[T]: ...


class Attempt:
    """One attempt's span: the headers to send with it, and `end` once it finished."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.headers: Mapping[str, str] = headers or {}

    def end(self, finished: Finished) -> None:
        """End the span with what the attempt gave."""


#: The attempt of `Off`: no span, no header.
NO_ATTEMPT = Attempt()


class Off:
    """Trace nothing: the engine's tracing when tracing is off."""

    async def claimed(self, jobs: Sequence[plan.Claimed], db: Runner) -> None:
        """Do nothing."""

    def attempt(self, job: plan.Claimed) -> Attempt:
        """Return an attempt without a span."""
        return NO_ATTEMPT


OFF = Off()


class _Traced(Attempt):
    def __init__(self, span: Any, started: int, headers: dict[str, str]) -> None:
        super().__init__(headers)
        self.span = span
        self.started = started

    def end(self, finished: Finished) -> None:
        span = self.span
        if span.is_recording():
            outcome = finished.outcome
            attributes: dict[str, Any] = {
                "webhooks.attempt.outcome": outcome.kind.value,
                "webhooks.attempt.duration_seconds": finished.duration,
            }
            if outcome.status_code is not None:
                attributes["http.response.status_code"] = outcome.status_code
            if outcome.error_kind is not None:
                attributes["webhooks.attempt.error_kind"] = outcome.error_kind.value
            if outcome.kind is not Kind.SUCCEEDED:
                # OpenTelemetry's error.type: the error's class, or the outcome.
                kind = outcome.error_kind.value if outcome.error_kind else outcome.kind.value
                attributes["error.type"] = kind
                span.set_status(_error(outcome.error))
            span.set_attributes(attributes)
        span.end(end_time=self.started + int(finished.duration * 1e9))


def _error(description: str | None) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)


class Tracing:
    """Make the relay's and the engine's spans with ``provider`` (an SDK TracerProvider)."""

    def __init__(self, provider: Any, *, traceparent: bool = False) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.traceparent = traceparent
        version = USER_AGENT.split("/", 1)[1].split(" ", 1)[0]
        self._tracer = provider.get_tracer(SCOPE, version)
        self._propagator = TraceContextTextMapPropagator()
        self._parents: OrderedDict[str, Any] = OrderedDict()

    def _parent(self, carrier: Mapping[str, str] | None) -> Any:
        """Return the OpenTelemetry context a stored carrier names (None: a new trace)."""
        return self._propagator.extract(dict(carrier)) if carrier else None

    # -- the relay ----------------------------------------------------------------------

    def fanned_out(
        self,
        conn: psycopg.Connection[Any],
        delivery_ids: list[int],
        started_ns: int,
        ended_ns: int,
    ) -> None:
        """Make a fan-out span per traced event of these new deliveries (`Relay.on_fan_out`)."""
        from opentelemetry.trace import SpanKind

        if not delivery_ids:
            return
        try:
            events = traces.fanned_out_traces(conn, delivery_ids)
        except psycopg.Error as exc:
            # The relay's own next statement meets the outage and handles it.
            log.warning("no fan-out spans for this batch: %s", exc)
            return
        for event in events:
            span = self._tracer.start_span(
                "webhooks fan-out",
                context=self._parent(event.trace_context),
                kind=SpanKind.PRODUCER,
                start_time=started_ns,
                attributes={
                    "webhooks.event.id": event.event_id,
                    "webhooks.event.type": event.event_type,
                    "webhooks.tenant": event.tenant_id,
                    "webhooks.deliveries": event.deliveries,
                    "webhooks.relay.batch_deliveries": len(delivery_ids),
                },
            )
            span.end(end_time=ended_ns)

    # -- the engine ---------------------------------------------------------------------

    async def claimed(self, jobs: Sequence[plan.Claimed], db: Runner) -> None:
        """Load the trace contexts of the claimed deliveries' events, for their attempts."""
        wanted = list({job.event_id for job in jobs if job.event_id not in self._parents})
        if not wanted:
            return
        lookup = partial(traces.event_traces, event_ids=wanted)
        try:
            found = await db.run(lookup, LOOKUP_PATIENCE)
        except Exception as exc:  # a span without its parent, never a delivery held up
            log.warning(
                "attempt spans of %d events start traces of their own: %s", len(wanted), exc
            )
            return
        for event_id in wanted:
            self._parents[event_id] = self._parent(found.get(event_id))
            self._parents.move_to_end(event_id)
        while len(self._parents) > REMEMBERED:
            self._parents.popitem(last=False)

    def attempt(self, job: plan.Claimed) -> Attempt:
        """Start the span of ``job``'s attempt; return it with the headers it adds."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        started = time.time_ns()
        span = self._tracer.start_span(
            "webhooks attempt",
            context=self._parents.get(job.event_id),
            kind=SpanKind.CLIENT,
            start_time=started,
        )
        if span.is_recording():  # a span sampled out costs no attribute
            url = urlsplit(job.url)
            span.set_attributes(
                {
                    "http.request.method": "POST",
                    "server.address": url.hostname or "",
                    "server.port": url.port or (443 if url.scheme == "https" else 80),
                    "user_agent.original": USER_AGENT,
                    "webhooks.endpoint.id": job.endpoint_id,
                    "webhooks.delivery.id": job.id,
                    "webhooks.event.id": job.event_id,
                    "webhooks.event.type": job.event_type,
                    "webhooks.tenant": job.tenant_id,
                    "webhooks.attempt.number": job.attempts + 1,
                    "webhooks.attempt.trigger": job.next_trigger,
                }
            )
        headers: dict[str, str] = {}
        if self.traceparent:
            self._propagator.inject(headers, context=trace.set_span_in_context(span))
        return _Traced(span, started, headers)


def from_settings(settings: Settings, service: str) -> Tracing | None:
    """Return the tracing the settings ask for (None: off), exporting as OTEL_* say.

    ``service`` (``webhooks-relay``, ``webhooks-worker``) names the service unless
    OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES do. A global TracerProvider someone else
    set up (``opentelemetry-instrument``) is used as it is. Raises ConfigError naming the
    extra when tracing is asked for and OpenTelemetry's SDK is not installed.
    """
    if not settings.traces_exporters:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import (
            SERVICE_NAME,
            OTELResourceDetector,
            Resource,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER",
            "tracing is configured but OpenTelemetry is not installed: "
            "pip install 'webhooks-outbox[otel]'",
        ) from None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return Tracing(current, traceparent=settings.traceparent)
    # Our default name first, then what the environment says, which wins.
    resource = Resource.create({SERVICE_NAME: service}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    for name in settings.traces_exporters:
        if name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ConfigError(
                    "OTEL_TRACES_EXPORTER",
                    "otlp needs opentelemetry-exporter-otlp-proto-http: "
                    "pip install 'webhooks-outbox[otel]'",
                ) from None
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return Tracing(provider, traceparent=settings.traceparent)
