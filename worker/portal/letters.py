"""The dead-letter pages: list with filters, select, replay with the dry-run count first."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to the builder, where only evaluated annotations can see it.
from dataclasses import asdict
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from worker.api.auth import Services
from worker.ops import deliveries
from worker.ops import dlq as letters
from worker.policy.retry import DEAD_REASONS
from worker.portal.render import Pages
from worker.portal.viewer import Refused, Viewer, ViewerDependency

PAGE = 50
#: The most dead letters one selection of rows names (the page shows 50).
MAX_IDS = 500


def selection_of(
    tenant: str, endpoint: str | None, event_type: str | None, reason: str | None
) -> letters.Selection:
    """Return the filter's selection, always inside the session's tenant."""
    return letters.Selection(
        endpoint_id=str(deliveries.parse_uuid("endpoint", endpoint)) if endpoint else None,
        event_type=(event_type or "").strip()[:255] or None,
        reason=reason if reason in DEAD_REASONS else None,
        tenant_id=tenant,
    )


def cursor(row: dict[str, object]) -> str:
    """Return the keyset cursor after a row (a `worker.store.dlq.Letter` as a plain dict):
    its death time and delivery id."""
    died = row["died_at"]
    assert isinstance(died, datetime)
    return f"{died.isoformat()}_{row['delivery_id']}"


def parse_cursor(text: str) -> tuple[datetime, int]:
    """Read a cursor `cursor` made; a malformed one is a 404 page."""
    at, _, ident = text.rpartition("_")
    try:
        moment = datetime.fromisoformat(at)
        number = int(ident)
    except ValueError:
        raise Refused(404, "Not found", "That page of dead letters does not exist.") from None
    if moment.tzinfo is None or not 0 < number < 2**63:
        raise Refused(404, "Not found", "That page of dead letters does not exist.")
    return moment, number


def routes(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    """Register the dead-letter pages."""
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.get("/dead-letters")
    def list_letters(
        v: Seen,
        endpoint: str | None = None,
        type: str | None = None,
        reason: str | None = None,
        after: str | None = None,
        replayed: int | None = None,
    ) -> Response:
        sel = selection_of(v.tenant, endpoint, type, reason)
        with services.connection() as conn:
            rows = letters.list_letters(
                conn,
                sel,
                limit=PAGE + 1,
                after=parse_cursor(after) if after else None,
            )
            endpoints = services.endpoints(conn).list(tenant_id=v.tenant, limit=200)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        query = urlencode(
            {
                k: val
                for k, val in (
                    ("endpoint", sel.endpoint_id),
                    ("type", sel.event_type),
                    ("reason", sel.reason),
                )
                if val
            }
        )
        return pages.render(
            "letters.html",
            v,
            rows=rows,
            sel=sel,
            endpoints=endpoints,
            reasons=("", *DEAD_REASONS),
            query=query,
            next_after=cursor(asdict(rows[-1])) if more else None,
            notice=f"{replayed} dead letter(s) sent again." if replayed is not None else None,
        )

    @router.post("/dead-letters/replay")
    def replay(v: Seen) -> Response:
        v.require_change()
        sel = selection_of(
            v.tenant, v.value("endpoint") or None, v.value("type"), v.value("reason")
        )
        scope = v.value("scope")
        ids: tuple[int, ...] = ()
        if scope == "selected":
            try:
                ids = tuple(int(i) for i in v.values("id")[:MAX_IDS])
            except ValueError:
                raise Refused(422, "That did not work", "A selected row is not valid.") from None
            if not ids:
                raise Refused(422, "Nothing selected", "Select at least one dead letter.")
            sel = letters.Selection(ids=ids, tenant_id=v.tenant)
        elif scope != "all":
            raise Refused(422, "That did not work", "Choose what to replay.")
        if v.value("confirm") != "yes":
            with services.connection() as conn:
                counted = letters.replay(conn, None, sel, dry_run=True)
            return pages.render(
                "replay.html",
                v,
                count=counted.replayed,
                disabled=counted.disabled_endpoints,
                scope=scope,
                ids=ids,
                sel=sel,
            )
        with services.connection() as conn:
            done = letters.replay(
                conn,
                services.broker(),
                # The tenant is part of every selection: `is_empty` is never true here.
                sel,
                enable_endpoints=v.value("enable") == "yes",
                queue_name=services.settings.queue_name,
                by=f"portal:{v.session.link_id}",
            )
        return RedirectResponse(v.url(f"/dead-letters?replayed={done.replayed}"), status_code=303)
