"""The /v1/events routes: publish an event, list events, show one with its deliveries."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to the builder, where only evaluated annotations can see it.
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response

from producers import publish
from producers.publish import MAX_IDEMPOTENCY_KEY
from worker.api.auth import CallerDependency, Principal, Services
from worker.api.models import EventIn, EventType
from worker.api.paging import decode_cursor, fast, page
from worker.api.params import EndpointId, Limit, TenantQuery, UuidCursor
from worker.ops import events
from worker.store.db import wrapped_errors


def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the event routes, in the order the OpenAPI document lists them."""
    v1 = APIRouter()
    Caller = Annotated[Principal, Depends(principal)]

    @v1.post(
        "/events",
        status_code=201,
        tags=["events"],
        response_model=dict[str, Any],
        responses={200: {"description": "The Idempotency-Key was used before: the first event"}},
    )
    def publish_event(
        body: EventIn,
        caller: Caller,
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY,
                description="Publishing the same key again is a no-op.",
            ),
        ] = None,
    ) -> Response:
        """Publish one event (201); the same Idempotency-Key answers the first event (200)."""
        tenant = caller.owner(body.tenant)
        with services.connection() as conn:
            with wrapped_errors(), conn.transaction():
                event_id = publish(
                    conn,
                    body.event_type,
                    body.data,
                    tenant_id=tenant,
                    idempotency_key=idempotency_key,
                    ordering_key=body.ordering_key,
                    max_payload_bytes=services.settings.max_payload_bytes,
                    event_types=services.settings.event_types,
                    validate=services.settings.validate_payloads,
                )
                repeated = events.published_before(conn, event_id)
            return fast(events.show(conn, event_id, tenant_id=tenant), 200 if repeated else 201)

    @v1.get("/events", tags=["events"], response_model=dict[str, Any])
    def list_events(
        caller: Caller,
        event_type: Annotated[EventType | None, Query()] = None,
        tenant: TenantQuery = None,
        limit: Limit = 50,
        cursor: UuidCursor = None,
    ) -> Response:
        """List events (without payloads), newest first."""
        after = decode_cursor(cursor, uuid.UUID)
        with services.connection() as conn:
            rows = events.list_events(
                conn,
                tenant_id=caller.scope(tenant),
                event_type=event_type,
                after=after[0] if after else None,
                limit=limit + 1,
            )
        return fast(page(rows, limit, lambda r: [r.id]))

    @v1.get("/events/{event_id}", tags=["events"], response_model=dict[str, Any])
    def get_event(event_id: EndpointId, caller: Caller, tenant: TenantQuery = None) -> Response:
        """Show one event with its payload and its deliveries."""
        with services.connection() as conn:
            return fast(events.show(conn, event_id, tenant_id=caller.scope(tenant)))

    return v1
