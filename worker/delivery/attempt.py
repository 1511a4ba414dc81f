"""One attempt of one claimed delivery: sign, send, classify and time it; the row that records it.

The one path every attempt takes, the engine's and `webhooks endpoint test`'s alike
(`worker.ops.ping`): `deliver_one` gives the same body, headers and signatures, the same
destination guard, deadline and response cap; `settle` and `record_params` give the same
new state and the same rows for `worker.store.engine.record`. What differs stays with the
caller: the engine gates, holds slow-endpoint slots, folds endpoint health and writes in
batches; the endpoint test brings a one-connection sender and records its one attempt at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from worker.delivery.http import classify_failure
from worker.delivery.request import MAX_RESPONSE_BYTES, envelope, request_headers, valid_keys
from worker.delivery.sender import Sender
from worker.errors import ConfigError
from worker.policy import plan
from worker.policy.outcome import ErrorKind, Kind, Outcome, classify_response
from worker.policy.signing import signature_header
from worker.settings import Settings
from worker.store.vault import Vault

__all__ = [
    "LOCK_MARGIN",
    "Finished",
    "deliver_one",
    "iso",
    "log_fields",
    "log_level",
    "record_params",
    "record_row",
    "settle",
]

#: Seconds a claim outlives the attempt's deadline, for recording the result (a group
#: commit of a few milliseconds; seconds under load). It bounds how soon a delivery held by
#: a killed worker is attempted again (request timeout + margin, ~35 s by default); a
#: record later than this lets another worker attempt the delivery again: at least once,
#: same webhook-id (guarantee 5).
LOCK_MARGIN = 5.0


@dataclass(frozen=True)
class Finished:
    """One attempt that ended, waiting to be recorded."""

    job: plan.Claimed
    outcome: Outcome
    body: bytes
    started_at: datetime
    duration: float

    @property
    def response_text(self) -> str | None:
        """Return the start of the answer as stored: text, NULs replaced; None if empty."""
        return self.body.decode("utf-8", "replace").replace("\x00", "\ufffd") or None


async def deliver_one(
    sender: Sender,
    vault: Vault,
    job: plan.Claimed,
    trace_headers: Mapping[str, str] | None = None,
) -> Finished:
    """Sign and send one claimed delivery through `sender`; return the attempt, timed.

    The Standard Webhooks body and headers, one signature per valid secret, the sender's
    destination guard, deadline and 16 KiB cap. Never raises but for cancellation: every
    failure is an outcome, recorded like any other (guarantee 4). ``trace_headers``
    (``traceparent``, `worker.observe.tracing`) replace custom headers of the same name.
    """
    started_at = datetime.now(UTC)
    started = time.monotonic()
    outcome, body = await _send(sender, vault, job, started_at, trace_headers or {})
    return Finished(job, outcome, body, started_at, time.monotonic() - started)


async def _send(
    sender: Sender,
    vault: Vault,
    job: plan.Claimed,
    now: datetime,
    trace_headers: Mapping[str, str],
) -> tuple[Outcome, bytes]:
    try:
        keys = valid_keys(job.secrets, vault, now)
        # Sealed like the secrets; opened values are cached by the vault, so an endpoint's
        # headers cost a Fernet open once per process, not once per attempt.
        custom = vault.open_headers(job.headers)
    except ConfigError as exc:
        # This process's WEBHOOKS_SECRET_KEY cannot open the endpoint's secret or headers:
        # nothing can be signed and sent as registered, so the attempt fails, recorded like
        # any other (guarantee 4).
        return Outcome(Kind.FAILED, None, ErrorKind.SECRET, f"not sent: {exc}"), b""
    if trace_headers:
        custom = {k: v for k, v in custom.items() if k.lower() not in trace_headers}
        custom.update(trace_headers)
    try:
        body = envelope(job.event_type, job.event_created_at, job.payload)
        stamp = int(time.time())
        headers = request_headers(
            custom,
            job.event_id,
            stamp,
            signature_header(keys, job.event_id, stamp, body),
        )
        response = await sender.send(job.url, body, headers, max_body=MAX_RESPONSE_BYTES)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Every way the receiver, the network or the stored endpoint can fail an attempt
        # is classified and recorded; none escapes unrecorded.
        return classify_failure(exc), b""
    outcome = classify_response(response.status_code, response.retry_after, datetime.now(UTC))
    return outcome, response.body


def settle(f: Finished, settings: Settings, now: datetime) -> plan.Settlement:
    """Return where a finished attempt leaves its delivery, on the configured schedule."""
    return plan.settle(
        f.job,
        f.outcome,
        now,
        schedule=settings.retry_schedule,
        max_age=settings.max_delivery_age,
        disable_after=settings.disable_after,
    )


def record_params(
    batch: Sequence[Finished],
    settled: Sequence[plan.Settlement],
    reset: Sequence[str],
    lease: float | None = None,
) -> dict[str, Any]:
    """Return the parameters of `worker.store.engine.record` for attempts and settlements.

    ``reset`` names the endpoints whose failure count a success clears (the caller decides:
    the engine's health folding, or the endpoint test's own rule). With a ``lease``, the
    record also wakes the next delivery of each ordering key it finishes, leased that long
    (the engine, which takes them over); without one it wakes none.
    """
    ordered = [f.job.id for f in batch if f.job.ordering_key is not None]
    return {
        "rows": Jsonb([record_row(f, s) for f, s in zip(batch, settled, strict=True)]),
        "ids": [f.job.id for f in batch],
        "reset": list(reset),
        "ordered": ordered if lease is not None else [],
        "lease": lease or 0.0,
    }


def record_row(f: Finished, s: plan.Settlement) -> dict[str, Any]:
    """Return the `worker.store.engine.record` row of one finished attempt and its settlement."""
    return {
        "id": f.job.id,
        "tenant": f.job.tenant_id,
        "spend": 1 if s.decision.spends_attempt else 0,
        "status": s.status,
        "dead_reason": s.decision.reason if s.status == "dead" else None,
        "next": iso(s.decision.next_attempt_at),
        "trigger": f.job.next_trigger,
        "started": iso(f.started_at),
        "duration": f.duration,
        "status_code": f.outcome.status_code,
        "body": f.response_text,
        "error_kind": f.outcome.error_kind,
        "error": f.outcome.error,
    }


def iso(value: datetime | None) -> str | None:
    """Return a timestamp as Postgres reads it from JSON rows, or None."""
    return None if value is None else value.isoformat()


def log_fields(job: plan.Claimed, **more: Any) -> dict[str, Any]:
    """Return the structured log fields that name one delivery's attempt."""
    return {
        "event_id": job.event_id,
        "delivery_id": job.id,
        "endpoint_id": job.endpoint_id,
        "attempt": job.attempts,
        **more,
    }


def log_level(outcome: Outcome, status: str) -> int:
    """Return the level of an attempt's log line: WARNING when someone must act.

    A delivery that went dead will not be sent again unless an operator replays it; an
    attempt not signed because WEBHOOKS_SECRET_KEY cannot open the endpoint's secret fails
    again on every retry until the key is fixed. Other outcomes are the receivers' own.
    """
    if status == "dead" or outcome.error_kind is ErrorKind.SECRET:
        return logging.WARNING
    return logging.INFO
