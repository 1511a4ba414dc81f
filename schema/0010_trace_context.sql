-- The trace context of the code that published each event (README, "Tracing").
--
-- publish() stores the W3C trace context (`traceparent`, and `tracestate` when there is one)
-- of the span current in the publishing process, as a JSON object, when OpenTelemetry is
-- installed there and a span is current; else null. The relay's fan-out and every attempt
-- of the event's deliveries become spans of that trace, so an operator follows one event from
-- the request that published it to the attempt that delivered it.

alter table webhooks.outbox add column trace_context jsonb;
