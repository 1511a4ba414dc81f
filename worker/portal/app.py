"""Build the tenant portal: `create_portal`, mounted by `worker.api.create_app` at /portal.

Server-rendered pages over the service layer (worker.ops), forms that work without
JavaScript (post, 303 redirect, get), every asset in the package. Every answer carries a
strict Content-Security-Policy (no inline script or style: the accent colour comes from
/theme.css), and every POST passes the session, Origin and anti-forgery checks of
`worker.portal.viewer`. One module per page group builds its routes.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to each builder, where only evaluated annotations can see it.
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from worker.api.auth import Services
from worker.api.limits import BodyLimit
from worker.errors import (
    DatabaseError,
    InvalidEndpoint,
    MigrationError,
    NotFound,
    WebhooksError,
    WrongState,
)
from worker.ops import portal
from worker.portal import endpoints, events, letters, overview, types
from worker.portal.render import Pages
from worker.portal.viewer import (
    COOKIE,
    TENANT_COOKIE,
    Refused,
    Viewer,
    ViewerDependency,
    base_path,
    viewer_dependency,
)
from worker.settings import Settings

log = logging.getLogger("webhooks.portal")

#: The largest form the portal reads: an endpoint's fields, with room to spare.
MAX_BODY = 256 * 1024


def security_headers(settings: Settings) -> dict[str, str]:
    """Return the headers every portal answer carries."""
    images = "'self'"
    if settings.portal_logo_url:
        logo = urlsplit(settings.portal_logo_url)
        images += f" {logo.scheme}://{logo.netloc}"
    ancestors = " ".join(settings.portal_frame_ancestors) or "'none'"
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; form-action 'self'; base-uri 'none'; "
        f"frame-ancestors {ancestors}"
    )
    return {
        "content-security-policy": policy,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }


def create_portal(services: Services | None = None, *, settings: Settings | None = None) -> FastAPI:
    """Return the portal as an ASGI application.

    Mount it in your own application (``app.mount("/portal", create_portal())``) or let
    `webhooks api` serve it at /portal. People reach it through links (`webhooks
    portal-link`, ``POST /v1/portal-links``, `App.portal_link`).
    """
    if services is None:
        services = Services(settings if settings is not None else Settings.from_env())
    conf = services.settings
    pages = Pages(conf)
    headers = security_headers(conf)
    # No redirect to the other spelling of a path: Starlette builds it from the Host header.
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    app.state.services = services
    app.add_middleware(BodyLimit, limit=MAX_BODY)

    @app.middleware("http")
    async def secure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for key, value in headers.items():
            response.headers.setdefault(key, value)
        return response

    _errors(app, pages, headers)
    viewer = viewer_dependency(services)
    router = APIRouter()
    _access(router, services, pages, viewer)
    for module in (overview, endpoints, letters, events, types):
        module.routes(router, services, pages, viewer)
    app.include_router(router)

    @app.get("/theme.css", include_in_schema=False)
    def theme() -> Response:
        css = f":root {{ --accent: {conf.portal_accent}; }}\n"
        return Response(css, media_type="text/css")

    app.mount("/static", StaticFiles(packages=[("worker.portal", "static")]), name="static")
    return app


def _cookie_flags(request: Request, settings: Settings) -> dict[str, object]:
    """Return how the session cookie is set: HttpOnly always; SameSite=Lax, or None+Secure
    when the portal may be framed by another site (a cross-site frame sends no Lax cookie);
    Secure under https; the path the portal is mounted at."""
    https = request.url.scheme == "https" or settings.portal_url.startswith("https://")
    framed = bool(settings.portal_frame_ancestors)
    return {
        "httponly": True,
        "samesite": "none" if framed else "lax",
        "secure": https or framed,
        "path": base_path(request) or "/",
    }


def _access(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    conf = services.settings
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.get("/enter", include_in_schema=False)
    def enter(request: Request, token: str = "") -> Response:
        """Spend a link: open a session and go to a URL without the token."""
        with services.connection() as conn:
            opened = portal.open_session(conn, token[:200], ttl=conf.portal_session_ttl)
        if opened is None:
            return pages.render(
                "refused.html",
                None,
                base=base_path(request),
                status=410,
                title="This link has expired",
                text="This link has expired or was already used: ask for a new one.",
            )
        _, session_token = opened
        answer = RedirectResponse(base_path(request) + "/", status_code=303)
        answer.set_cookie(
            COOKIE,
            session_token,
            max_age=int(conf.portal_session_ttl),
            **_cookie_flags(request, conf),  # type: ignore[arg-type]
        )
        answer.delete_cookie(TENANT_COOKIE, path=base_path(request) or "/")
        return answer

    @router.post("/logout", include_in_schema=False)
    def logout(request: Request, v: Seen) -> Response:
        with services.connection() as conn:
            portal.end_session(conn, v.token)
        answer = pages.render(
            "refused.html",
            None,
            base=base_path(request),
            title="Signed out",
            text="You are signed out. Open a new link to come back.",
        )
        answer.delete_cookie(COOKIE, path=base_path(request) or "/")
        return answer

    @router.post("/tenant", include_in_schema=False)
    def switch(request: Request, v: Seen) -> Response:
        seen = v
        if not seen.session.admin:
            raise Refused(403, "Not allowed", "Only an admin session switches tenants.")
        answer = RedirectResponse(seen.url("/"), status_code=303)
        answer.set_cookie(
            TENANT_COOKIE,
            seen.value("tenant")[:128],
            **_cookie_flags(request, conf),  # type: ignore[arg-type]
        )
        return answer


def _errors(app: FastAPI, pages: Pages, headers: dict[str, str]) -> None:
    """Answer every expected error with a page, never a traceback.

    The pages carry the security headers themselves: a crash is answered outside the
    middleware that adds them to every other answer.
    """

    def page(request: Request, status: int, title: str, text: str) -> Response:
        answer = pages.render(
            "refused.html", None, base=base_path(request), status=status, title=title, text=text
        )
        answer.headers.update(headers)
        return answer

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return page(request, exc.status, exc.title, exc.text)

    async def not_found(request: Request, exc: Exception) -> Response:
        return page(request, 404, "Not found", "There is nothing here, or it is not yours.")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return await not_found(request, exc)
        return page(request, exc.status_code, "Request refused", str(exc.detail))

    async def service_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NotFound):
            return await not_found(request, exc)
        if isinstance(exc, DatabaseError | MigrationError):
            return page(request, 503, "Unavailable", "The service is busy or down: try again.")
        status = 409 if isinstance(exc, WrongState) else 422
        if not isinstance(exc, WrongState | InvalidEndpoint):
            status = 400
        return page(request, status, "That did not work", str(exc))

    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("portal page %s failed", request.url.path, exc_info=exc)
        return page(request, 500, "Something went wrong", "The page failed: try again later.")

    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(RequestValidationError, not_found)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(WebhooksError, service_error)
