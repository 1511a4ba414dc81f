"""One attempt of one claimed delivery: sign and send it, and the row that records it.

The one path every attempt takes, the engine's and `webhooks endpoint test`'s alike
(`worker.ops.ping`): the same body, headers and signatures, the same destination guard,
deadline and response cap, recorded by the same row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.engine.http import Sender, classify_failure
from worker.engine.request import MAX_RESPONSE_BYTES, envelope, request_headers, valid_keys
from worker.errors import ConfigError
from worker.policy import plan
from worker.policy.outcome import ErrorKind, Kind, Outcome, classify_response
from worker.policy.signing import signature_header
from worker.store.vault import Vault

__all__ = [
    "LOCK_MARGIN",
    "Finished",
    "iso",
    "log_fields",
    "log_level",
    "record_row",
    "send_attempt",
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


async def send_attempt(
    sender: Sender, vault: Vault, job: plan.Claimed, now: datetime
) -> tuple[Outcome, bytes]:
    """Sign and send one claimed delivery; return its outcome and the start of the answer.

    The Standard Webhooks body and headers, one signature per valid secret, the sender's
    destination guard, deadline and 16 KiB cap.
    """
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


def record_row(f: Finished, s: plan.Settlement) -> dict[str, Any]:
    """Return the `queries.RECORD` row of one finished attempt and its settlement."""
    text = f.body.decode("utf-8", "replace").replace("\x00", "\ufffd")
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
        "body": text or None,
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
