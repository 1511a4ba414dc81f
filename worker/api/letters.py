"""The /v1/dead-letters routes: list dead letters, replay or discard a selection of them."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to the builder, where only evaluated annotations can see it.
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from worker.api.auth import CallerDependency, Principal, Services
from worker.api.models import DiscardIn, EventType, Id, LettersIn, Moment, ReplayIn
from worker.api.paging import decode_cursor, fast, page
from worker.api.params import Limit, TenantQuery, TimeIdCursor
from worker.api.problems import Problem
from worker.ops import dlq as letters
from worker.policy.retry import DeadReason


# One short closure per route; the builder is as long as the routes it registers.
def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the dead-letter routes, in the order the OpenAPI document lists them."""
    v1 = APIRouter()
    Caller = Annotated[Principal, Depends(principal)]

    @v1.get("/dead-letters", tags=["dead-letters"], response_model=dict[str, Any])
    def list_dead_letters(
        caller: Caller,
        endpoint_id: Annotated[Id | None, Query()] = None,
        event_type: Annotated[EventType | None, Query()] = None,
        since: Annotated[Moment | None, Query(description="Died at or after.")] = None,
        reason: DeadReason | None = None,
        history: bool = False,
        tenant: TenantQuery = None,
        limit: Limit = 50,
        cursor: TimeIdCursor = None,
    ) -> Response:
        """List dead letters, newest first (replayed ones too with history=true)."""
        after = decode_cursor(cursor, datetime, int)
        selection = letters.Selection(
            endpoint_id=endpoint_id,
            event_type=event_type,
            since=since,
            reason=reason,
            tenant_id=caller.scope(tenant),
        )
        with services.connection() as conn:
            rows = letters.list_letters(
                conn,
                selection,
                limit=limit + 1,
                history=history,
                after=(after[0], after[1]) if after else None,
            )
        return fast(page(rows, limit, lambda r: [r.died_at, r.delivery_id]))

    @v1.post("/dead-letters/replay", tags=["dead-letters"])
    def replay_dead_letters(body: ReplayIn, caller: Caller) -> dict[str, Any]:
        """Replay the selected dead letters (dry_run: only count them)."""
        selection = _selection(body, caller)
        with services.connection() as conn:
            result = letters.replay(
                conn,
                None if body.dry_run else services.broker(),
                selection,
                limit=body.limit,
                dry_run=body.dry_run,
                enable_endpoints=body.enable_endpoints,
                queue_name=services.settings.queue_name,
                by=caller.name,
            )
        return asdict(result)

    @v1.post("/dead-letters/discard", tags=["dead-letters"])
    def discard_dead_letters(body: DiscardIn, caller: Caller) -> dict[str, Any]:
        """Give the selected dead letters up for good: they leave the list and no replay
        takes them; the ordering keys they held up go on (dry_run: only count them)."""
        selection = _selection(body, caller)
        with services.connection() as conn:
            result = letters.discard(
                conn,
                None if body.dry_run else services.broker(),
                selection,
                dry_run=body.dry_run,
                queue_name=services.settings.queue_name,
                by=caller.name,
            )
        return asdict(result)

    return v1


def _selection(body: LettersIn, caller: Principal) -> letters.Selection:
    """Return the dead letters a body chooses, in the caller's tenant; 422 for none."""
    chosen = letters.Selection(
        ids=tuple(body.ids),
        endpoint_id=body.endpoint_id,
        event_type=body.event_type,
        since=body.since,
        reason=body.reason,
        everything=body.all,
    )
    if chosen.is_empty():
        raise Problem(
            422,
            "choose dead letters: ids, endpoint_id, event_type, since, reason, or all",
            kind="invalid-value",
        )
    return letters.Selection(**{**asdict(chosen), "tenant_id": caller.scope(body.tenant)})
