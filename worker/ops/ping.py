"""Send a test event to one endpoint now: the Python API behind `webhooks endpoint test`.

The test event is a real event, recorded like any other, so an operator finds it afterwards
(`deliveries list --event-type webhooks.test`, `endpoint show`) as Svix and Hookdeck users
expect. It is addressed to the one endpoint (`outbox.endpoint_id`) and marked relayed when
it is written, so the relay never fans it out to the tenant's other endpoints; its one
delivery is created already claimed and attempted from the caller's thread through the
engine's own path (`worker.delivery.deliver_one`: signature, headers, destination guard,
deadline, 16 KiB cap, on a one-connection sender of its own), and the attempt is recorded,
trigger ``test``, with the delivery's new state settled as the engine settles it, in the
engine's own statement; it takes no slow-endpoint slot and moves no circuit. A failed test
is then retried on the schedule like any delivery; if the caller dies mid-attempt, the
claim's lock runs out and the scheduler takes the delivery up (guarantee 3).

No Postgres connection is held while the receiver is asked: the test takes one connection
for the write before the attempt (the event and its claim, one transaction) and another for
the record after it, from the ``connect`` it is given (`worker.app.App.connection`). A
receiver that takes the whole request timeout to answer keeps a thread, never one of the
pool's connections. Should the record come after the claim's lock ran out (a pool busy past
`LOCK_MARGIN`), the scheduler may have attempted the delivery again meanwhile: at least
once, the same webhook-id (guarantee 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from producers.ids import uuid7
from worker.delivery.attempt import LOCK_MARGIN, Finished, deliver_one, record_params, settle
from worker.delivery.sender import Sender
from worker.errors import WrongState
from worker.ops.endpoints import Endpoints
from worker.ops.validation import check_test_event_type
from worker.policy import plan
from worker.policy.outcome import Kind
from worker.queue import LEASE_SECONDS
from worker.settings import Settings
from worker.store import engine as store
from worker.store import events
from worker.store.db import Connect, wrapped_errors
from worker.store.vault import Vault

#: The event type of a test event unless the caller names another.
TEST_EVENT_TYPE = "webhooks.test"


@dataclass(frozen=True)
class TestAttempt:
    """What a test event's attempt got, and where it left the delivery."""

    delivery_id: int
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    number: int
    trigger: str
    started_at: datetime
    duration_seconds: float
    outcome: str
    status_code: int | None
    error_kind: str | None
    error: str | None
    response_body: str | None
    delivery_status: str
    next_attempt_at: datetime | None
    endpoint_disabled: str | None

    @property
    def ok(self) -> bool:
        """Tell whether the receiver answered 2xx."""
        return self.outcome == Kind.SUCCEEDED.value


def send_test_event(
    connect: Connect,
    settings: Settings,
    endpoint_id: str,
    *,
    event_type: str = TEST_EVENT_TYPE,
    tenant_id: str | None = None,
    vault: Vault,
    sender: Callable[[], Sender],
) -> TestAttempt:
    """Publish a test event to one endpoint, attempt it now and return the attempt.

    ``connect`` lends a connection for each write (`worker.app.App.connection`); none is
    held during the attempt itself, made through a new ``sender`` (`worker.app.App.sender`)
    closed after it.
    """
    check_test_event_type(event_type)
    with connect() as conn:
        job = _claim(conn, settings, vault, endpoint_id, event_type, tenant_id)
    # The receiver may take the whole request timeout: no connection is held meanwhile.
    finished = asyncio.run(_attempt(sender(), vault, job))
    with connect() as conn:
        return _record(conn, settings, vault, finished)


def _claim(
    conn: psycopg.Connection[Any],
    settings: Settings,
    vault: Vault,
    endpoint_id: str,
    event_type: str,
    tenant_id: str | None,
) -> plan.Claimed:
    """Write the test event with its one delivery, claimed for this caller; return the claim.

    A WEBHOOKS_SECRET_KEY that cannot open the stored secrets is refused first, as when a
    secret is written: the attempt could not be signed, and nothing is recorded.
    """
    registry = Endpoints(conn, vault)
    endpoint = registry.get(endpoint_id, tenant_id=tenant_id)
    if not endpoint.enabled:
        disabled = f"endpoint {endpoint.id} is disabled: "
        raise WrongState(
            disabled + f"`webhooks endpoint enable {endpoint.id}` first",
            api=disabled + f"POST /v1/endpoints/{endpoint.id}/enable first",
        )
    registry.check_key()
    lock = settings.request_timeout + LOCK_MARGIN
    payload = {"test": True, "endpoint_id": endpoint.id, "sent_at": _now().isoformat()}
    with wrapped_errors(), conn.transaction():
        created = events.create_test_event(
            conn,
            event_id=uuid7(),
            tenant_id=endpoint.tenant_id,
            event_type=event_type,
            payload=Jsonb(payload),
            endpoint_id=endpoint.id,
            lease=LEASE_SECONDS,
        )
        # The engine's own claim: the delivery is ours until `lock` runs out.
        claimed = store.claim_one(conn, created.id, created.message_id, lock)
    assert claimed is not None
    return claimed


async def _attempt(sender: Sender, vault: Vault, job: plan.Claimed) -> Finished:
    try:
        return await deliver_one(sender, vault, job)
    finally:
        await sender.close()


def _record(
    conn: psycopg.Connection[Any], settings: Settings, vault: Vault, finished: Finished
) -> TestAttempt:
    job, outcome = finished.job, finished.outcome
    settled = settle(finished, settings, _now())
    # A success clears the endpoint's failure count (not an open circuit: its probe or an
    # operator's `endpoint reset` closes that); a failed test counts toward nothing.
    reset = [job.endpoint_id] if outcome.kind is Kind.SUCCEEDED else []
    with wrapped_errors():
        store.record_sync(conn, record_params([finished], [settled], reset))
    if settled.disable_reason:
        # What the receiver said holds for every delivery (410 Gone): as in the engine, and
        # announced like any disable.
        Endpoints(conn, vault, operations_tenant=settings.operations_tenant).disable(
            job.endpoint_id, settled.disable_reason
        )
    return TestAttempt(
        delivery_id=job.id,
        event_id=job.event_id,
        event_type=job.event_type,
        endpoint_id=job.endpoint_id,
        url=job.url,
        number=job.attempts + 1,
        trigger=job.next_trigger,
        started_at=finished.started_at,
        duration_seconds=finished.duration,
        outcome=outcome.kind.value,
        status_code=outcome.status_code,
        error_kind=outcome.error_kind,
        error=outcome.error,
        response_body=finished.response_text,
        delivery_status=settled.status,
        next_attempt_at=settled.decision.next_attempt_at if settled.status == "pending" else None,
        endpoint_disabled=settled.disable_reason,
    )


def _now() -> datetime:
    return datetime.now(UTC)
