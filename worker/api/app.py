"""Build the management HTTP API: `create_app`, mountable in any ASGI application.

Every route calls the same service functions as the `webhooks` commands (worker.ops); there is
no SQL here. Routes are plain functions FastAPI runs in its thread pool, each with a pooled
autocommit connection for the length of the call. One module per resource builds its routes
(endpoints, events, deliveries, letters, status); this one puts them together.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.api import deliveries, endpoints, events, letters, links, status
from worker.api.auth import Auth, Services, caller_dependency
from worker.api.models import problem_media_type, problem_responses
from worker.api.problems import Problem, answer, install
from worker.settings import Settings

log = logging.getLogger("webhooks.api")

API_VERSION = "1"
#: How much larger than WEBHOOKS_MAX_PAYLOAD_BYTES a request body may be (its JSON
#: envelope, indentation, escapes) before it is refused unread.
BODY_SLACK = 4


class BodyLimit:
    """Answer 413 to a request whose declared body is far over the payload limit.

    Checked before the body is read, so a client cannot make the process buffer gigabytes;
    the payload's own size is still checked exactly by `publish` (413 too).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"0")
            if not declared.isdigit() or int(declared) > self.limit:
                response = answer(
                    Problem(
                        413 if declared.isdigit() else 400,
                        f"the request body is over {self.limit} bytes"
                        if declared.isdigit()
                        else "the Content-Length header is not a number",
                    )
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
        links.router,
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
    app.add_middleware(BodyLimit, limit=services.settings.max_payload_bytes * BODY_SLACK + 65536)
    app.include_router(v1)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_type(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(status.probes(services))
    # The tenant portal, on the same services (pool, slots) as the API. An install from
    # before the portal may lack its templates' library: the API still serves.
    try:
        from worker.portal import create_portal
    except ImportError as exc:
        log.warning("the portal is not served (%s): pip install 'webhooks-outbox[api]'", exc)
    else:
        app.mount("/portal", create_portal(services))
    return app
