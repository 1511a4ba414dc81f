"""The event types a tenant can subscribe to: the platform's catalogue (description, group,
flags, latest schema and example), then the types it published lately that the catalogue
does not name, each with its latest payload as the example."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to the builder, where only evaluated annotations can see it.
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from worker.api.auth import Services
from worker.ops import event_types as catalogue
from worker.ops import portal
from worker.portal.render import Pages
from worker.portal.viewer import Viewer, ViewerDependency

#: The most catalogue entries one page shows.
MAX_SHOWN = 1000


def routes(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    """Register the event-type page."""
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.get("/event-types")
    def event_types(v: Seen) -> Response:
        with services.connection() as conn:
            known = catalogue.list_types(conn, archived=True, limit=MAX_SHOWN)
            published = portal.event_types(conn, v.tenant)
        names = {t.name for t in known}
        known.sort(key=lambda t: (t.archived, t.group is None, t.group or "", t.name))
        rows = [r for r in published if r.event_type not in names]
        return pages.render("types.html", v, catalogue=known, rows=rows)
