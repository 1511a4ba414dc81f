"""The endpoint pages: list with health, add, show, edit, disable/enable, delete, rotate and
reveal the secret, send a test event."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Seen` is local to the builder, where only evaluated annotations can see it.
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from worker.api.auth import Services
from worker.api.slots import Full
from worker.errors import InvalidEndpoint
from worker.ops import portal
from worker.ops.endpoint import Endpoint
from worker.ops.endpoints import UNCHANGED
from worker.ops.validation import endpoint_uuid, parse_header
from worker.policy import filters
from worker.policy.redaction import MARKER
from worker.portal.render import Pages
from worker.portal.viewer import Refused, Viewer, ViewerDependency

PAGE = 50
#: Grace periods a rotation may keep the old secret signing for (the form's choices).
GRACES = (0.0, 3600.0, 86400.0, 604800.0)
DISABLED_HERE = "disabled in the portal"
HIDDEN = (
    "Endpoint created. This session may not see signing secrets: ask whoever gave you the "
    "link for it."
)


def form_of(ep: Endpoint | None) -> dict[str, str]:
    """Return the edit form's fields for an endpoint (empty for a new one)."""
    if ep is None:
        return {
            "url": "",
            "description": "",
            "event_types": "",
            "headers": "",
            "rate_limit": "",
            "filter": "",
            "ordered": "",
        }
    return {
        "url": ep.url,
        "description": ep.description,
        "event_types": "\n".join(ep.event_types or ()),
        "headers": "\n".join(f"{k}: {v}" for k, v in ep.headers.items()),
        "rate_limit": str(ep.rate_limit or ""),
        "filter": json.dumps(ep.filter, indent=2, ensure_ascii=False) if ep.filter else "",
        "ordered": "on" if ep.ordered else "",
    }


def parse_form(v: Viewer, shown: Endpoint | None = None) -> dict[str, Any]:
    """Return the endpoint fields a form posted, or raise InvalidEndpoint naming the bad one.

    Header values are shown redacted (they carry credentials): posted back as shown, the
    headers are left as they are; a redacted value among changed headers is refused rather
    than stored as the marker.
    """
    types = [line.strip() for line in v.value("event_types").splitlines() if line.strip()]
    lines = [line for line in v.value("headers").splitlines() if line.strip()]
    headers: Any
    if shown is not None and "\n".join(lines) == form_of(shown)["headers"]:
        headers = UNCHANGED
    else:
        for line in lines:
            name, _, value = line.partition(":")
            if MARKER in value:
                raise InvalidEndpoint(
                    f"header {name.strip()!r} is shown redacted: type its whole value again"
                    " to change the headers, or remove its line"
                )
        headers = dict(parse_header(line) for line in lines)
    limit_text = v.value("rate_limit").strip()
    if limit_text and not limit_text.isdigit():
        raise InvalidEndpoint("rate limit must be a whole number of requests a second")
    filter_text = v.value("filter").strip()
    return {
        "url": v.value("url").strip(),
        "description": v.value("description").strip(),
        "event_types": types or None,
        "headers": headers,
        "rate_limit": int(limit_text) if limit_text else None,
        # The language's own check, with the path of what is wrong (worker.policy.filters).
        "filter": filters.parse_text(filter_text).source if filter_text else None,
        # A checkbox: posted as "on" when ticked, absent when not.
        "ordered": v.value("ordered") == "on",
    }


def routes(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    """Register the endpoint pages."""
    _records(router, services, pages, viewer)
    _actions(router, services, pages, viewer)


def _records(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.get("/endpoints")
    def list_endpoints(v: Seen, after: str | None = None) -> Response:
        if after is not None:
            endpoint_uuid(after)  # a malformed cursor is a 404 page, not a query
        with services.connection() as conn:
            rows = services.endpoints(conn).list(tenant_id=v.tenant, after=after, limit=PAGE + 1)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return pages.render(
            "endpoints.html", v, rows=rows, next_after=rows[-1].id if more else None
        )

    @router.get("/endpoints/new")
    def new_endpoint(v: Seen) -> Response:
        v.require_change()
        return pages.render(
            "endpoint_form.html",
            v,
            ep=None,
            form=form_of(None),
            action="/endpoints",
            back="/endpoints",
            error=None,
        )

    @router.post("/endpoints")
    def add_endpoint(v: Seen) -> Response:
        v.require_change()
        try:
            fields = parse_form(v)
            # The host is resolved before a connection is taken (worker.ops.prefetch).
            resolved = services.prefetch(fields["url"])
            with services.connection() as conn:
                ep, secret = services.endpoints(conn, resolver=resolved).add(
                    tenant_id=v.tenant, **fields
                )
        except InvalidEndpoint as exc:
            return pages.render(
                "endpoint_form.html",
                v,
                status=422,
                ep=None,
                action="/endpoints",
                back="/endpoints",
                error=str(exc),
                form={k: v.value(k) for k in form_of(None)},
            )
        if not v.can_see_secrets:
            return _shown(services, pages, v, ep, None, "", notice=HIDDEN)
        return _shown(services, pages, v, ep, secret, "Created.")

    @router.get("/endpoints/{endpoint_id}")
    def show_endpoint(v: Seen, endpoint_id: str) -> Response:
        with services.connection() as conn:
            ep = services.endpoints(conn).get(endpoint_id, tenant_id=v.tenant)
        return _shown(services, pages, v, ep, None, "")

    @router.get("/endpoints/{endpoint_id}/edit")
    def edit_endpoint(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        with services.connection() as conn:
            ep = services.endpoints(conn).get(endpoint_id, tenant_id=v.tenant)
        return pages.render(
            "endpoint_form.html",
            v,
            ep=ep,
            form=form_of(ep),
            action=f"/endpoints/{ep.id}/edit",
            back=f"/endpoints/{ep.id}",
            error=None,
        )

    @router.post("/endpoints/{endpoint_id}/edit")
    def update_endpoint(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        with services.connection() as conn:
            ep = services.endpoints(conn).get(endpoint_id, tenant_id=v.tenant)
        try:
            fields = parse_form(v, shown=ep)
            resolved = services.prefetch(fields["url"])
            with services.connection() as conn:
                services.endpoints(conn, resolver=resolved).update(
                    ep.id, tenant_id=v.tenant, **fields
                )
        except InvalidEndpoint as exc:
            return pages.render(
                "endpoint_form.html",
                v,
                status=422,
                ep=ep,
                action=f"/endpoints/{ep.id}/edit",
                back=f"/endpoints/{ep.id}",
                error=str(exc),
                form={k: v.value(k) for k in form_of(None)},
            )
        return RedirectResponse(v.url(f"/endpoints/{ep.id}"), status_code=303)


def _actions(router: APIRouter, services: Services, pages: Pages, viewer: ViewerDependency) -> None:
    Seen = Annotated[Viewer, Depends(viewer)]

    @router.post("/endpoints/{endpoint_id}/disable")
    def disable_endpoint(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        with services.connection() as conn:
            ep, _ = services.endpoints(conn).disable(endpoint_id, DISABLED_HERE, tenant_id=v.tenant)
        return RedirectResponse(v.url(f"/endpoints/{ep.id}"), status_code=303)

    @router.post("/endpoints/{endpoint_id}/enable")
    def enable_endpoint(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        with services.connection() as conn:
            ep = services.endpoints(conn).enable(endpoint_id, tenant_id=v.tenant)
        return RedirectResponse(v.url(f"/endpoints/{ep.id}"), status_code=303)

    @router.get("/endpoints/{endpoint_id}/delete")
    def confirm_delete(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        with services.connection() as conn:
            registry = services.endpoints(conn)
            ep = registry.get(endpoint_id, tenant_id=v.tenant)
            gone = registry.dependents(endpoint_id, tenant_id=v.tenant)
        return pages.render("endpoint_delete.html", v, ep=ep, gone=gone)

    @router.post("/endpoints/{endpoint_id}/delete")
    def delete_endpoint(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        with services.connection() as conn:
            services.endpoints(conn).delete(endpoint_id, tenant_id=v.tenant)
        return RedirectResponse(v.url("/endpoints"), status_code=303)

    @router.post("/endpoints/{endpoint_id}/reveal")
    def reveal_secret(v: Seen, endpoint_id: str) -> Response:
        v.require_secrets()
        with services.connection() as conn:
            registry = services.endpoints(conn)
            ep = registry.get(endpoint_id, tenant_id=v.tenant)
            secret = registry.current_secret(endpoint_id, tenant_id=v.tenant)
        return _shown(services, pages, v, ep, secret, "Current secret.")

    @router.post("/endpoints/{endpoint_id}/rotate")
    def rotate_secret(v: Seen, endpoint_id: str) -> Response:
        v.require_secrets()
        try:
            grace = float(v.value("grace", "86400"))
        except ValueError:
            grace = -1.0
        if grace not in GRACES:
            raise Refused(422, "That did not work", "Choose a grace period from the list.")
        with services.connection() as conn:
            registry = services.endpoints(conn)
            secret = registry.rotate_secret(endpoint_id, grace=grace, tenant_id=v.tenant)
            ep = registry.get(endpoint_id, tenant_id=v.tenant)
        return _shown(services, pages, v, ep, secret, "New secret.")

    @router.post("/endpoints/{endpoint_id}/test")
    def test_endpoint(v: Seen, endpoint_id: str) -> Response:
        v.require_change()
        try:
            with services.tests.taken(("tenant", v.tenant)):
                # The same function as POST /v1/endpoints/{id}/test: no connection is held
                # while the receiver answers (worker.ops.ping).
                attempt = services.send_test_event(
                    endpoint_id,
                    tenant_id=v.tenant,
                )
        except Full as exc:
            raise Refused(
                429, "Too many tests at once", f"{exc.detail}: try again in {exc.retry_after}s."
            ) from None
        return RedirectResponse(v.url(f"/deliveries/{attempt.delivery_id}"), status_code=303)


def _shown(
    services: Services,
    pages: Pages,
    v: Viewer,
    ep: Endpoint,
    secret: str | None,
    label: str,
    notice: str | None = None,
) -> Response:
    with services.connection() as conn:
        health = portal.endpoint_health(conn, ep.id, ep.tenant_id)
        blocked = portal.blocked_keys(conn, ep.id, ep.tenant_id) if ep.ordered else []
    return pages.render(
        "endpoint.html",
        v,
        ep=ep,
        health=health,
        blocked=blocked,
        secret=secret,
        secret_label=label,
        notice=notice,
    )
