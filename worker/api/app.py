"""Build the management HTTP API: `create_app`, mountable in any ASGI application.

Every route calls the same service functions as the `webhooks` commands (worker.ops); there is
no SQL here. Routes are plain functions FastAPI runs in its thread pool, each with a pooled
autocommit connection for the length of the call. One module per resource builds its routes
(endpoints, events, deliveries, letters, status); this one puts them together.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from worker.api import deliveries, endpoints, events, letters, status
from worker.api.auth import Auth, Services, caller_dependency
from worker.api.limits import BodyLimit, body_cap
from worker.api.models import problem_media_type, problem_responses
from worker.api.problems import install
from worker.settings import Settings

API_VERSION = "1"


def create_app(settings: Settings | None = None, *, auth: Auth | None = None) -> FastAPI:
    """Return the management API as a FastAPI application.

    Mount it in your own application (``app.mount("/webhooks", create_app())``) or serve it
    with `webhooks api`. Without ``auth`` callers present an API key (``Authorization:
    Bearer whk_...``, see `webhooks api-key`); with ``auth``, a callable (sync or async) of
    the request that returns a `Principal`, or None to refuse it with 401.
    """
    services = Services(settings if settings is not None else Settings.from_env())
    principal = caller_dependency(services, auth)
    v1 = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 404, 409, 413, 422, 503))
    # The order here is the order of the paths in the OpenAPI document.
    for routes in (
        endpoints.router,
        events.router,
        deliveries.router,
        letters.router,
        status.router,
    ):
        v1.include_router(routes(services, principal))

    app = FastAPI(
        title="webhooks-outbox management API",
        version=API_VERSION,
        description="Endpoints, events, deliveries, dead letters and status of a "
        "webhooks-outbox installation. Errors are RFC 9457 problems.",
    )
    app.state.services = services
    install(app)
    # Added last, so it runs first: a body is bounded before anything else reads it.
    app.add_middleware(BodyLimit, limit=body_cap(services.settings.max_payload_bytes))
    app.include_router(v1)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_type(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(status.probes(services))
    return app
