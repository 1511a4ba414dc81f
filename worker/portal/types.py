"""The event types a tenant can subscribe to: the distinct types it published lately, each
with its latest payload as the example."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to the builder, where only evaluated annotations can see it.
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from worker.api.auth import Services
from worker.ops import portal
from worker.portal.render import Pages
from worker.portal.viewer import Viewer, ViewerDependency


def routes(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    """Register the event-type page."""
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.get("/event-types")
    def event_types(v: Seen) -> Response:
        with services.connection() as conn:
            rows = portal.event_types(conn, v.tenant)
        return pages.render("types.html", v, rows=rows)
