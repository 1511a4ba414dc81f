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

from worker.api import (
    deliveries,
    docs,
    endpoints,
    event_types,
    events,
    letters,
    links,
    methods,
    status,
)
from worker.api.auth import Auth, AuthenticateFirst, Services, caller_dependency, resolver
from worker.api.limits import BodyLimit, body_cap
from worker.api.models import finish_document, problem_responses
from worker.api.problems import install
from worker.settings import Settings

log = logging.getLogger("webhooks.api")

API_VERSION = "1"


class OneSpelling:
    """Answer a path with a trailing slash as the path without it, rather than redirect.

    Starlette's redirect to the other spelling builds an absolute URL from the Host header,
    which the client chooses: `GET /v1/status/` with `Host: evil.example` was sent on to
    http://evil.example/v1/status.
    """

    def __init__(self, app: ASGIApp, mounted: tuple[str, ...] = ()) -> None:
        self.app = app
        #: Prefixes of mounted applications (the portal), whose paths are theirs to spell.
        self.mounted = mounted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            route = path[len(root) :] if root and path.startswith(root) else path
            if len(route) > 1 and route.endswith("/") and not route.startswith(self.mounted):
                trimmed = route.rstrip("/") or "/"
                scope = {**scope, "path": path[: len(path) - len(route)] + trimmed}
                if scope.get("raw_path"):
                    scope["raw_path"] = scope["raw_path"].rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, auth: Auth | None = None) -> FastAPI:
    """Return the management API as a FastAPI application.

    Mount it in your own application (``app.mount("/webhooks", create_app())``) or serve it
    with `webhooks api`. Without ``auth`` callers present an API key (``Authorization:
    Bearer whk_...``, see `webhooks api-key`); with ``auth``, a callable (sync or async) of
    the request that returns a `Principal`, or None to refuse it with 401.
    """
    services = Services(settings if settings is not None else Settings.from_env())
    resolve = resolver(services, auth)
    principal = caller_dependency(resolve)
    v1 = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 404, 409, 413, 422, 503))
    # The order here is the order of the paths in the OpenAPI document.
    for routes in (
        endpoints.router,
        events.router,
        deliveries.router,
        letters.router,
        links.router,
        event_types.router,
        status.router,
    ):
        v1.include_router(routes(services, principal))

    app = FastAPI(
        # Served from the wheel (worker.api.docs), not from a CDN.
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        title="webhooks-outbox management API",
        version=API_VERSION,
        description="Endpoints, events, deliveries, dead letters and status of a "
        "webhooks-outbox installation. Errors are RFC 9457 problems.",
    )
    app.state.services = services
    install(app)
    methods.install(app)
    app.add_middleware(AuthenticateFirst, resolve=resolve, routes=app.routes)
    app.add_middleware(OneSpelling, mounted=("/portal/",))
    # Added last, so it runs first: a body is bounded before anything else reads it.
    app.add_middleware(BodyLimit, limit=body_cap(services.settings.max_payload_bytes))
    app.include_router(v1)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish_document(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(status.probes(services))
    app.include_router(docs.router(app.title, app.openapi_url or "/openapi.json"))
    # The tenant portal, on the same services (pool, slots) as the API. An install from
    # before the portal may lack its templates' library: the API still serves.
    try:
        from worker.portal import create_portal
    except ImportError as exc:
        log.warning("the portal is not served (%s): pip install 'webhooks-outbox[api]'", exc)
    else:
        app.mount("/portal", create_portal(services))
    return app
