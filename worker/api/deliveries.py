"""The /v1/deliveries routes: list deliveries, show one, retry a pending one, resend one."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to the builder, where only evaluated annotations can see it.
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from worker.api.auth import CallerDependency, Principal, Services
from worker.api.models import EventType, Id, Moment
from worker.api.paging import decode_cursor, fast, page
from worker.api.params import DeliveryId, IdCursor, Limit, TenantQuery
from worker.ops import deliveries as store


# One short closure per route; the builder is as long as the routes it registers.
def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the delivery routes, in the order the OpenAPI document lists them."""
    v1 = APIRouter()
    Caller = Annotated[Principal, Depends(principal)]
    conf = services.settings

    @v1.get("/deliveries", tags=["deliveries"], response_model=dict[str, Any])
    def list_deliveries(
        caller: Caller,
        status: Literal["pending", "succeeded", "dead"] | None = None,
        endpoint_id: Annotated[Id | None, Query()] = None,
        event_id: Annotated[Id | None, Query()] = None,
        event_type: Annotated[EventType | None, Query()] = None,
        since: Annotated[Moment | None, Query(description="Created at or after.")] = None,
        tenant: TenantQuery = None,
        limit: Limit = 50,
        cursor: IdCursor = None,
    ) -> Response:
        """List deliveries, newest first."""
        after = decode_cursor(cursor, int)
        with services.connection() as conn:
            rows = store.list_deliveries(
                conn,
                status=status,
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                since=since,
                tenant_id=caller.scope(tenant),
                limit=limit + 1,
                after=after[0] if after else None,
            )
        return fast(page(rows, limit, lambda r: [r.id]))

    @v1.get("/deliveries/{delivery_id}", tags=["deliveries"], response_model=dict[str, Any])
    def get_delivery(
        delivery_id: DeliveryId, caller: Caller, tenant: TenantQuery = None
    ) -> Response:
        """Show one delivery with its event and every attempt."""
        with services.connection() as conn:
            return fast(store.show(conn, delivery_id, caller.scope(tenant)))

    @v1.post("/deliveries/{delivery_id}/retry", tags=["deliveries"])
    def retry_delivery(
        delivery_id: DeliveryId, caller: Caller, tenant: TenantQuery = None
    ) -> dict[str, Any]:
        """Attempt a pending delivery now (409 if it is finished or in flight)."""
        with services.connection() as conn:
            done = store.retry(
                conn,
                services.broker(),
                delivery_id,
                tenant_id=caller.scope(tenant),
                queue_name=conf.queue_name,
            )
        return asdict(done)

    @v1.post("/deliveries/{delivery_id}/resend", tags=["deliveries"])
    def resend_delivery(
        delivery_id: DeliveryId, caller: Caller, tenant: TenantQuery = None
    ) -> dict[str, Any]:
        """Send a succeeded or dead delivery again, same webhook-id (409 if pending)."""
        with services.connection() as conn:
            done = store.resend(
                conn,
                services.broker(),
                delivery_id,
                tenant_id=caller.scope(tenant),
                queue_name=conf.queue_name,
                by=caller.name,
            )
        return asdict(done)

    return v1
