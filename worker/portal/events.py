"""The event log: events newest first, one event with a row per delivery, deliveries by
status and endpoint, and one delivery with every attempt (retry now, resend)."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to the builder, where only evaluated annotations can see it.
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path
from fastapi.responses import RedirectResponse, Response

from worker.api.auth import Services
from worker.ops import deliveries, events
from worker.portal.render import Pages
from worker.portal.viewer import Refused, Viewer, ViewerDependency

PAGE = 50
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def parse_since(text: str | None) -> datetime | None:
    """Read the form's "created since" (a browser's datetime-local, taken as UTC)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(422, "That did not work", "The time is not one: use the picker.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def routes(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    """Register the event-log pages."""
    Seen = Annotated[Viewer, Depends(viewer)]
    conf = services.settings

    @router.get("/events")
    def list_events(
        v: Seen, type: str | None = None, id: str | None = None, after: str | None = None
    ) -> Response:
        if id:
            found = deliveries.parse_uuid("event", id.strip())
            return RedirectResponse(v.url(f"/events/{found}"), status_code=303)
        event_type = (type or "").strip()[:255] or None
        with services.connection() as conn:
            rows = events.list_events(
                conn, tenant_id=v.tenant, event_type=event_type, after=after, limit=PAGE + 1
            )
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return pages.render(
            "events.html",
            v,
            rows=rows,
            event_type=event_type,
            next_after=rows[-1].id if more else None,
        )

    @router.get("/events/{event_id}")
    def show_event(v: Seen, event_id: str) -> Response:
        with services.connection() as conn:
            event = events.show(conn, event_id, tenant_id=v.tenant)
        return pages.render("event.html", v, event=event)

    @router.get("/deliveries")
    def list_deliveries(
        v: Seen,
        status: str | None = None,
        endpoint: str | None = None,
        type: str | None = None,
        since: str | None = None,
        after: int | None = None,
    ) -> Response:
        moment = parse_since(since)
        chosen_status = status if status in deliveries.STATUSES else None
        chosen_endpoint = endpoint or None
        event_type = (type or "").strip()[:255] or None
        with services.connection() as conn:
            rows = deliveries.list_deliveries(
                conn,
                status=chosen_status,
                endpoint_id=str(deliveries.parse_uuid("endpoint", chosen_endpoint))
                if chosen_endpoint
                else None,
                event_type=event_type,
                since=moment,
                tenant_id=v.tenant,
                limit=PAGE + 1,
                after=after,
            )
            endpoints = services.endpoints(conn).list(tenant_id=v.tenant, limit=200)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        query = urlencode(
            {
                k: val
                for k, val in (
                    ("status", chosen_status),
                    ("endpoint", chosen_endpoint),
                    ("type", event_type),
                    ("since", since if moment else None),
                )
                if val
            }
        )
        return pages.render(
            "deliveries.html",
            v,
            rows=rows,
            endpoints=endpoints,
            chosen=chosen_status,
            endpoint=chosen_endpoint,
            event_type=event_type,
            since=since if moment else "",
            query=query,
            next_after=rows[-1].id if more else None,
        )

    @router.get("/deliveries/{delivery_id}")
    def show_delivery(v: Seen, delivery_id: DeliveryId) -> Response:
        with services.connection() as conn:
            found = deliveries.show(conn, delivery_id, tenant_id=v.tenant)
            endpoint = services.endpoints(conn).get(found.endpoint_id, tenant_id=v.tenant)
        return pages.render("delivery.html", v, d=found, custom=endpoint.headers)

    @router.post("/deliveries/{delivery_id}/retry")
    def retry_delivery(v: Seen, delivery_id: DeliveryId) -> Response:
        v.require_change()
        with services.connection() as conn:
            deliveries.retry(
                conn,
                services.broker(),
                delivery_id,
                tenant_id=v.tenant,
                queue_name=conf.queue_name,
            )
        return RedirectResponse(v.url(f"/deliveries/{delivery_id}"), status_code=303)

    @router.post("/deliveries/{delivery_id}/resend")
    def resend_delivery(v: Seen, delivery_id: DeliveryId) -> Response:
        v.require_change()
        with services.connection() as conn:
            deliveries.resend(
                conn,
                services.broker(),
                delivery_id,
                tenant_id=v.tenant,
                queue_name=conf.queue_name,
                by=f"portal:{v.session.link_id}",
            )
        return RedirectResponse(v.url(f"/deliveries/{delivery_id}"), status_code=303)
