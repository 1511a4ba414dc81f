"""The overview: the tenant's endpoints with their health, dead letters waiting, and the
last 24 hours' attempts as a server-rendered chart (SVG: no script needed)."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to the builder, where only evaluated annotations can see it.
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from worker.api.auth import Services
from worker.ops import dlq, portal
from worker.portal.render import Pages
from worker.portal.viewer import Viewer, ViewerDependency

HOURS = 24
#: The chart's drawing area, in SVG units.
WIDTH, HEIGHT, GAP = 720, 100, 4
#: Endpoints the overview lists; the endpoint page pages through the rest.
SHOWN = 100


@dataclass(frozen=True)
class Bar:
    """One hour of the chart: where it is drawn and what it counts."""

    hour: datetime
    attempts: int
    ok: int
    x: float
    width: float
    height: float
    ok_height: float

    @property
    def failed(self) -> int:
        return self.attempts - self.ok


def chart(rows: list[dict[str, Any]], now: datetime) -> list[Bar]:
    """Return one bar per hour of the last 24, oldest first, scaled to the tallest.

    ``rows`` are `worker.store.portal.Hour` rows as plain dicts (``asdict``): a pure function
    of values, tested with rows written by hand.
    """
    by_hour = {r["hour"].astimezone(UTC): r for r in rows}
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [last - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    # Scaled to the hours drawn: the query's 24 hours reach into a 25th clock hour.
    tallest = max((int(by_hour[h]["attempts"]) for h in hours if h in by_hour), default=0) or 1
    width = WIDTH / HOURS
    bars = []
    for i, hour in enumerate(hours):
        row = by_hour.get(hour, {})
        attempts, ok = int(row.get("attempts", 0)), int(row.get("ok", 0))
        bars.append(
            Bar(
                hour=hour,
                attempts=attempts,
                ok=ok,
                x=round(i * width + GAP / 2, 1),
                width=round(width - GAP, 1),
                height=round(HEIGHT * attempts / tallest, 1),
                ok_height=round(HEIGHT * ok / tallest, 1),
            )
        )
    return bars


def routes(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    """Register the overview page."""
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.get("/")
    def overview(v: Seen) -> Response:
        with services.connection() as conn:
            endpoints = services.endpoints(conn).list(tenant_id=v.tenant, limit=SHOWN)
            waiting = dlq.count(conn, dlq.Selection(tenant_id=v.tenant))
            hours = portal.hourly(conn, v.tenant)
        bars = chart([asdict(h) for h in hours], datetime.now(UTC))
        attempts = sum(b.attempts for b in bars)
        ok = sum(b.ok for b in bars)
        return pages.render(
            "overview.html",
            v,
            endpoints=endpoints,
            waiting=waiting,
            bars=bars,
            attempts=attempts,
            ok=ok,
            rate=round(100 * ok / attempts, 1) if attempts else None,
            width=WIDTH,
            height=HEIGHT,
        )
