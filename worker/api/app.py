"""Build the management HTTP API: `create_app`, mountable in any ASGI application.

Every route calls the same service functions as the `webhooks` commands (worker.ops); there is
no SQL here. Routes are plain functions FastAPI runs in its thread pool, each with a pooled
autocommit connection for the length of the call.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to create_app, where only evaluated annotations can see it.
import base64
import binascii
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from producers import publish
from worker.api.models import (
    Deleted,
    DisableIn,
    EndpointCreated,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EventIn,
    EventType,
    Id,
    Page,
    ReplayIn,
    RotateIn,
    SecretOut,
    Tenant,
    TestIn,
    problem_media_type,
    problem_responses,
)
from worker.api.problems import Problem, answer, install
from worker.app import App
from worker.errors import NotFound
from worker.observe.health import Readiness
from worker.ops import apikeys, events, ping
from worker.ops import deliveries as store
from worker.ops import dlq as letters
from worker.ops import status as state
from worker.ops.endpoints import UNCHANGED
from worker.policy.retry import DeadReason
from worker.queue import Queue
from worker.settings import Settings
from worker.store.db import wrapped_errors

log = logging.getLogger("webhooks.api")

API_VERSION = "1"
MAX_LIMIT = 500
BIG = 2**63 - 1
#: How much larger than WEBHOOKS_MAX_PAYLOAD_BYTES a request body may be (its JSON
#: envelope, indentation, escapes) before it is refused unread.
BODY_SLACK = 4
DEFAULT_GRACE = 86400.0
DEFAULT_REASON = "disabled by operator"


@dataclass(frozen=True)
class Principal:
    """Who is calling: one tenant's client, or an admin (every tenant)."""

    tenant_id: str | None = None
    admin: bool = False
    name: str = "api"

    def __post_init__(self) -> None:
        if self.admin == (self.tenant_id is not None):
            raise ValueError("a principal is either one tenant's or admin, not both or neither")

    def scope(self, tenant: str | None) -> str | None:
        """Return the tenant a call acts in (None: every tenant, admin only).

        A tenant's client naming another tenant learns nothing: the answer is 404, as for
        another tenant's ids.
        """
        if self.admin:
            return tenant
        if tenant is not None and tenant != self.tenant_id:
            raise NotFound("tenant", tenant)
        return self.tenant_id

    def owner(self, tenant: str | None) -> str:
        """Return the tenant a new row belongs to."""
        return self.scope(tenant) or "default"


#: A mounting application's own authentication: the caller of a request, or None (401).
Auth = Callable[[Request], "Principal | Awaitable[Principal | None] | None"]


class Services(App):
    """The API's `App`: a pool of connections, warnings logged, and API-key authentication.

    The pool opens on first use rather than at startup: a mounted application's lifespan does
    not run the sub-application's, and building the app (for its OpenAPI document) needs no
    database.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, pool_size=10, application_name="webhooks-api")
        self._readiness: Readiness | None = None

    def broker(self) -> Queue:
        """Return the queue retries, resends and replays push to (the configured broker)."""
        return self.queue()

    def readiness(self) -> Readiness:
        """Return the readiness check of the relay and workers, for this process."""
        with self._lock:
            if self._readiness is None:
                self._readiness = Readiness(
                    self.settings.require_database_url(), self.settings.broker_url
                )
            return self._readiness

    def authenticate(self, header: str | None) -> Principal | None:
        """Return the principal of an ``Authorization: Bearer`` header, or None."""
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        with self.connection() as conn:
            found = apikeys.authenticate(conn, key.strip())
        if found is None:
            return None
        if found.tenant_id is None:
            return Principal(admin=True, name=f"api-key:{found.id}")
        return Principal(tenant_id=found.tenant_id, name=f"api-key:{found.id}")


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


# -- pagination ---------------------------------------------------------------------------


def encode_cursor(key: list[Any]) -> str:
    """Return an opaque cursor for a sort key."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> list[Any] | None:
    """Return the sort key a cursor holds (checked against ``types``), or raise a 422."""
    if cursor is None:
        return None
    bad = Problem(
        422,
        "cursor is not one this API gave",
        kind="bad-cursor",
        errors=[{"field": "cursor", "message": "not a cursor from next_cursor"}],
    )
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(key, list) or len(key) != len(types):
        raise bad
    out: list[Any] = []
    for value, kind in zip(key, types, strict=True):
        try:
            if kind is int:
                if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= BIG:
                    raise ValueError
                out.append(value)
            elif kind is uuid.UUID:
                out.append(str(uuid.UUID(value)))
            elif kind is datetime:
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is None:
                    raise ValueError
                out.append(moment)
            else:
                raise ValueError
        except (ValueError, TypeError, AttributeError):
            raise bad from None
    return out


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # UUIDs


def fast(value: Any, status: int = 200) -> Response:
    """Answer rows as JSON with the C encoder.

    FastAPI's own path (validating against the return type, then `jsonable_encoder`) cost
    about 5 ms for a page of 50 deliveries, more than the query; rows from the service layer
    are already JSON types but for times, UUIDs and decimals.
    """
    return Response(
        json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def page(rows: list[Any], limit: int, key: Callable[[Any], list[Any]]) -> dict[str, Any]:
    """Cut a list fetched with ``limit + 1`` rows into a page and its next cursor."""
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode_cursor(key(rows[-1])) if more and rows else None}


# -- the application ----------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page.")
]
TenantQuery = Annotated[Tenant | None, Query(description="Admin keys only: act in this tenant.")]
DeliveryId = Annotated[int, Path(ge=1, le=BIG)]
EndpointId = Annotated[str, Path(max_length=64)]


def create_app(settings: Settings | None = None, *, auth: Auth | None = None) -> FastAPI:
    """Return the management API as a FastAPI application.

    Mount it in your own application (``app.mount("/webhooks", create_app())``) or serve it
    with `webhooks api`. Without ``auth`` callers present an API key (``Authorization:
    Bearer whk_...``, see `webhooks api-key`); with ``auth``, a callable (sync or async) of
    the request that returns a `Principal`, or None to refuse it with 401.
    """
    services = Services(settings if settings is not None else Settings.from_env())
    bearer = HTTPBearer(auto_error=False, description="An API key: `webhooks api-key create`.")

    async def principal(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if auth is not None:
            found = auth(request)
            if inspect.isawaitable(found):
                found = await found
        else:
            found = await run_in_threadpool(
                services.authenticate, request.headers.get("authorization")
            )
        if not isinstance(found, Principal):
            raise Problem(
                401,
                "send a live API key: Authorization: Bearer whk_...",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found

    Caller = Annotated[Principal, Depends(principal)]
    v1 = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 404, 409, 413, 422, 503))
    conf = services.settings

    # -- endpoints ------------------------------------------------------------------------

    @v1.post("/endpoints", status_code=201, response_model=EndpointCreated, tags=["endpoints"])
    def create_endpoint(body: EndpointIn, caller: Caller) -> EndpointCreated:
        """Register an endpoint; its signing secret is in this answer only."""
        with services.connection() as conn:
            ep, secret = services.endpoints(conn).add(
                body.url,
                tenant_id=caller.owner(body.tenant),
                event_types=body.event_types,
                headers=body.headers,
                rate_limit=body.rate_limit,
                description=body.description,
            )
        return EndpointCreated(**EndpointOut.of(ep).model_dump(), secret=secret)

    @v1.get("/endpoints", response_model=Page[EndpointOut], tags=["endpoints"])
    def list_endpoints(
        caller: Caller, tenant: TenantQuery = None, limit: Limit = 50, cursor: Cursor = None
    ) -> dict[str, Any]:
        """List endpoints, oldest first."""
        after = decode_cursor(cursor, uuid.UUID)
        with services.connection() as conn:
            found = services.endpoints(conn).list(
                tenant_id=caller.scope(tenant),
                after=after[0] if after else None,
                limit=limit + 1,
            )
        return page([EndpointOut.of(ep) for ep in found], limit, lambda ep: [ep.id])

    @v1.get("/endpoints/{endpoint_id}", response_model=EndpointOut, tags=["endpoints"])
    def get_endpoint(
        endpoint_id: EndpointId, caller: Caller, tenant: TenantQuery = None
    ) -> EndpointOut:
        """Show one endpoint."""
        with services.connection() as conn:
            ep = services.endpoints(conn).get(endpoint_id, tenant_id=caller.scope(tenant))
        return EndpointOut.of(ep)

    @v1.patch("/endpoints/{endpoint_id}", response_model=EndpointOut, tags=["endpoints"])
    def update_endpoint(
        endpoint_id: EndpointId, body: EndpointPatch, caller: Caller, tenant: TenantQuery = None
    ) -> EndpointOut:
        """Change the fields given; null clears event_types (all), headers or rate_limit."""
        given = body.model_fields_set
        if ("url" in given and body.url is None) or (
            "description" in given and body.description is None
        ):
            raise Problem(422, "url and description cannot be null", kind="invalid-value")
        with services.connection() as conn:
            ep = services.endpoints(conn).update(
                endpoint_id,
                tenant_id=caller.scope(tenant),
                url=body.url,
                description=body.description,
                event_types=body.event_types if "event_types" in given else UNCHANGED,
                headers=body.headers if "headers" in given else UNCHANGED,
                rate_limit=body.rate_limit if "rate_limit" in given else UNCHANGED,
            )
        return EndpointOut.of(ep)

    @v1.delete("/endpoints/{endpoint_id}", response_model=Deleted, tags=["endpoints"])
    def delete_endpoint(
        endpoint_id: EndpointId, caller: Caller, tenant: TenantQuery = None
    ) -> Deleted:
        """Delete an endpoint with its deliveries, attempts and dead letters."""
        with services.connection() as conn:
            gone = services.endpoints(conn).delete(endpoint_id, tenant_id=caller.scope(tenant))
        return Deleted(id=endpoint_id, **asdict(gone))

    @v1.post("/endpoints/{endpoint_id}/rotate-secret", response_model=SecretOut, tags=["endpoints"])
    def rotate_secret(
        endpoint_id: EndpointId,
        caller: Caller,
        tenant: TenantQuery = None,
        body: Annotated[RotateIn | None, Body()] = None,
    ) -> SecretOut:
        """Make a new signing secret; the old ones keep signing for grace_seconds."""
        grace = body.grace_seconds if body is not None else DEFAULT_GRACE
        with services.connection() as conn:
            secret = services.endpoints(conn).rotate_secret(
                endpoint_id, grace=grace, tenant_id=caller.scope(tenant)
            )
        return SecretOut(id=endpoint_id, secret=secret)

    @v1.post("/endpoints/{endpoint_id}/enable", response_model=EndpointOut, tags=["endpoints"])
    def enable_endpoint(
        endpoint_id: EndpointId, caller: Caller, tenant: TenantQuery = None
    ) -> EndpointOut:
        """Resume delivering to an endpoint and close its circuit."""
        with services.connection() as conn:
            ep = services.endpoints(conn).enable(endpoint_id, tenant_id=caller.scope(tenant))
        return EndpointOut.of(ep)

    @v1.post("/endpoints/{endpoint_id}/disable", response_model=EndpointOut, tags=["endpoints"])
    def disable_endpoint(
        endpoint_id: EndpointId,
        caller: Caller,
        tenant: TenantQuery = None,
        body: Annotated[DisableIn | None, Body()] = None,
    ) -> EndpointOut:
        """Stop delivering to an endpoint; its pending deliveries become dead letters."""
        with services.connection() as conn:
            ep, _ = services.endpoints(conn).disable(
                endpoint_id,
                body.reason if body is not None else DEFAULT_REASON,
                tenant_id=caller.scope(tenant),
            )
        return EndpointOut.of(ep)

    @v1.post("/endpoints/{endpoint_id}/test", tags=["endpoints"])
    def test_endpoint(
        endpoint_id: EndpointId,
        caller: Caller,
        tenant: TenantQuery = None,
        body: Annotated[TestIn | None, Body()] = None,
    ) -> dict[str, Any]:
        """Send a test event to the endpoint now; answer with the attempt."""
        with services.connection() as conn:
            attempt = ping.send_test_event(
                conn,
                conf,
                endpoint_id,
                event_type=body.event_type if body is not None else ping.TEST_EVENT_TYPE,
                tenant_id=caller.scope(tenant),
                vault=services.vault,
            )
        return {**asdict(attempt), "ok": attempt.ok}

    # -- events ---------------------------------------------------------------------------

    @v1.post("/events", status_code=201, tags=["events"], response_model=dict[str, Any])
    def publish_event(
        body: EventIn,
        caller: Caller,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=255, description="Publishing the same key again is a no-op."),
        ] = None,
    ) -> Response:
        """Publish one event; the same Idempotency-Key answers the same event."""
        tenant = caller.owner(body.tenant)
        with services.connection() as conn:
            with wrapped_errors(), conn.transaction():
                event_id = publish(
                    conn,
                    body.event_type,
                    body.data,
                    tenant_id=tenant,
                    idempotency_key=idempotency_key,
                    max_payload_bytes=conf.max_payload_bytes,
                )
            return fast(events.show(conn, event_id, tenant_id=tenant), 201)

    @v1.get("/events", tags=["events"], response_model=dict[str, Any])
    def list_events(
        caller: Caller,
        event_type: Annotated[EventType | None, Query()] = None,
        tenant: TenantQuery = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Response:
        """List events (without payloads), newest first."""
        after = decode_cursor(cursor, uuid.UUID)
        with services.connection() as conn:
            rows = events.list_events(
                conn,
                tenant_id=caller.scope(tenant),
                event_type=event_type,
                after=after[0] if after else None,
                limit=limit + 1,
            )
        return fast(page(rows, limit, lambda r: [r["id"]]))

    @v1.get("/events/{event_id}", tags=["events"], response_model=dict[str, Any])
    def get_event(event_id: EndpointId, caller: Caller, tenant: TenantQuery = None) -> Response:
        """Show one event with its payload and its deliveries."""
        with services.connection() as conn:
            return fast(events.show(conn, event_id, tenant_id=caller.scope(tenant)))

    # -- deliveries -----------------------------------------------------------------------

    @v1.get("/deliveries", tags=["deliveries"], response_model=dict[str, Any])
    def list_deliveries(
        caller: Caller,
        status: Literal["pending", "succeeded", "dead"] | None = None,
        endpoint_id: Annotated[Id | None, Query()] = None,
        event_id: Annotated[Id | None, Query()] = None,
        event_type: Annotated[EventType | None, Query()] = None,
        since: Annotated[datetime | None, Query(description="Created at or after.")] = None,
        tenant: TenantQuery = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Response:
        """List deliveries, newest first."""
        after = decode_cursor(cursor, int)
        with services.connection() as conn:
            rows = store.list_deliveries(
                conn,
                status=status,
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                since=since,
                tenant_id=caller.scope(tenant),
                limit=limit + 1,
                after=after[0] if after else None,
            )
        return fast(page(rows, limit, lambda r: [r["id"]]))

    @v1.get("/deliveries/{delivery_id}", tags=["deliveries"], response_model=dict[str, Any])
    def get_delivery(
        delivery_id: DeliveryId, caller: Caller, tenant: TenantQuery = None
    ) -> Response:
        """Show one delivery with its event and every attempt."""
        with services.connection() as conn:
            return fast(store.show(conn, delivery_id, caller.scope(tenant)))

    @v1.post("/deliveries/{delivery_id}/retry", tags=["deliveries"])
    def retry_delivery(
        delivery_id: DeliveryId, caller: Caller, tenant: TenantQuery = None
    ) -> dict[str, Any]:
        """Attempt a pending delivery now (409 if it is finished or in flight)."""
        with services.connection() as conn:
            done = store.retry(
                conn,
                services.broker(),
                delivery_id,
                tenant_id=caller.scope(tenant),
                queue_name=conf.queue_name,
            )
        return asdict(done)

    @v1.post("/deliveries/{delivery_id}/resend", tags=["deliveries"])
    def resend_delivery(
        delivery_id: DeliveryId, caller: Caller, tenant: TenantQuery = None
    ) -> dict[str, Any]:
        """Send a succeeded or dead delivery again, same webhook-id (409 if pending)."""
        with services.connection() as conn:
            done = store.resend(
                conn,
                services.broker(),
                delivery_id,
                tenant_id=caller.scope(tenant),
                queue_name=conf.queue_name,
                by=caller.name,
            )
        return asdict(done)

    # -- dead letters ---------------------------------------------------------------------

    @v1.get("/dead-letters", tags=["dead-letters"], response_model=dict[str, Any])
    def list_dead_letters(
        caller: Caller,
        endpoint_id: Annotated[Id | None, Query()] = None,
        event_type: Annotated[EventType | None, Query()] = None,
        since: Annotated[datetime | None, Query(description="Died at or after.")] = None,
        reason: DeadReason | None = None,
        history: bool = False,
        tenant: TenantQuery = None,
        limit: Limit = 50,
        cursor: Cursor = None,
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
        return fast(page(rows, limit, lambda r: [r["died_at"].isoformat(), r["delivery_id"]]))

    @v1.post("/dead-letters/replay", tags=["dead-letters"])
    def replay_dead_letters(body: ReplayIn, caller: Caller) -> dict[str, Any]:
        """Replay the selected dead letters (dry_run: only count them)."""
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
        selection = letters.Selection(**{**asdict(chosen), "tenant_id": caller.scope(body.tenant)})
        with services.connection() as conn:
            result = letters.replay(
                conn,
                None if body.dry_run else services.broker(),
                selection,
                limit=body.limit,
                dry_run=body.dry_run,
                enable_endpoints=body.enable_endpoints,
                queue_name=conf.queue_name,
            )
        return asdict(result)

    # -- status ---------------------------------------------------------------------------

    @v1.get("/status", tags=["status"], response_model=dict[str, Any])
    def get_status(caller: Caller, tenant: TenantQuery = None) -> Response:
        """Backlog, lag, deliveries by state, dead letters, endpoints and queue depth."""
        with services.connection() as conn:
            return fast(
                state.status(
                    conn, services.broker(), conf.queue_name, tenant_id=caller.scope(tenant)
                )
            )

    app = FastAPI(
        title="webhooks-outbox management API",
        version=API_VERSION,
        description="Endpoints, events, deliveries, dead letters and status of a "
        "webhooks-outbox installation. Errors are RFC 9457 problems.",
    )
    app.state.services = services
    install(app)
    app.add_middleware(BodyLimit, limit=conf.max_payload_bytes * BODY_SLACK + 65536)
    app.include_router(v1)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_type(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        verdict = services.readiness().check()
        return JSONResponse(
            {"status": "ready" if verdict.ready else "not ready", "reason": verdict.reason},
            status_code=200 if verdict.ready else 503,
        )

    return app
