"""The /v1/status route, and the /healthz and /readyz probes outside the API's document."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to the builder, where only evaluated annotations can see it.
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from worker.api.auth import CallerDependency, Principal, Services
from worker.api.paging import fast
from worker.api.params import TenantQuery
from worker.ops import status as state


def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the status route."""
    v1 = APIRouter()
    Caller = Annotated[Principal, Depends(principal)]

    @v1.get("/status", tags=["status"], response_model=dict[str, Any])
    def get_status(caller: Caller, tenant: TenantQuery = None) -> Response:
        """Backlog, lag, deliveries by state, dead letters, endpoints and queue depth."""
        conf = services.settings
        with services.connection() as conn:
            found = state.status(conn, None, conf.queue_name, tenant_id=caller.scope(tenant))
        # The broker is asked once the connection is given back.
        found = replace(found, queue_depth=state.queue_depth(services.broker(), conf.queue_name))
        return fast(found)

    return v1


def probes(services: Services) -> APIRouter:
    """Return /healthz (the process answers) and /readyz (the relay and workers are up).

    Neither asks for a key: load balancers and orchestrators call them.
    """
    root = APIRouter()

    @root.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @root.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        verdict = services.readiness().check()
        return JSONResponse(
            {"status": "ready" if verdict.ready else "not ready", "reason": verdict.reason},
            status_code=200 if verdict.ready else 503,
        )

    return root
