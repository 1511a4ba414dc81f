"""The /v1/endpoints routes: register, list, show, change and delete; rotate, enable, test."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to each builder, where only evaluated annotations can see it.
import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from worker.api.auth import CallerDependency, Principal, Services
from worker.api.models import (
    Deleted,
    DisableIn,
    EndpointCreated,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    Page,
    RotateIn,
    SecretOut,
    TestFilterIn,
    TestIn,
    VerdictOut,
    problem_responses,
)
from worker.api.paging import decode_cursor, page
from worker.api.params import EndpointId, Limit, TenantQuery, UuidCursor
from worker.api.problems import Problem
from worker.api.slots import Full
from worker.ops import ping
from worker.ops.endpoints import UNCHANGED
from worker.ops.filtering import verdict

DEFAULT_GRACE = 86400.0
DEFAULT_REASON = "disabled by operator"


def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the endpoint routes, in the order the OpenAPI document lists them."""
    routes = APIRouter()
    _records(routes, services, principal)
    _actions(routes, services, principal)
    return routes


#: The fields of a PATCH that may be absent but not null.
_NOT_NULL = ("url", "description", "ordered")


# One short closure per route; the builder is as long as the routes it registers.
def _records(v1: APIRouter, services: Services, principal: CallerDependency) -> None:
    Caller = Annotated[Principal, Depends(principal)]

    @v1.post("/endpoints", status_code=201, response_model=EndpointCreated, tags=["endpoints"])
    def create_endpoint(body: EndpointIn, caller: Caller) -> EndpointCreated:
        """Register an endpoint; its signing secret is in this answer only."""
        # The URL's host is resolved before a connection is taken, not while holding one.
        resolved = services.prefetch(body.url)
        with services.connection() as conn:
            ep, secret = services.endpoints(conn, resolver=resolved).add(
                body.url,
                tenant_id=caller.owner(body.tenant),
                event_types=body.event_types,
                headers=body.headers,
                rate_limit=body.rate_limit,
                description=body.description,
                filter=body.filter,
                ordered=body.ordered,
            )
        return EndpointCreated(**EndpointOut.of(ep).model_dump(), secret=secret)

    @v1.get("/endpoints", response_model=Page[EndpointOut], tags=["endpoints"])
    def list_endpoints(
        caller: Caller, tenant: TenantQuery = None, limit: Limit = 50, cursor: UuidCursor = None
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
        """Change the fields given; null clears event_types (all), headers, rate_limit, filter."""
        given = body.model_fields_set
        if any(name in given and getattr(body, name) is None for name in _NOT_NULL):
            raise Problem(422, "url, description and ordered cannot be null", kind="invalid-value")
        resolved = services.prefetch(body.url)
        with services.connection() as conn:
            ep = services.endpoints(conn, resolver=resolved).update(
                endpoint_id,
                tenant_id=caller.scope(tenant),
                url=body.url,
                description=body.description,
                event_types=body.event_types if "event_types" in given else UNCHANGED,
                headers=body.headers if "headers" in given else UNCHANGED,
                rate_limit=body.rate_limit if "rate_limit" in given else UNCHANGED,
                filter=body.filter if "filter" in given else UNCHANGED,
                ordered=body.ordered,
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


# One short closure per route; the builder is as long as the routes it registers.
def _actions(v1: APIRouter, services: Services, principal: CallerDependency) -> None:
    Caller = Annotated[Principal, Depends(principal)]

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

    @v1.post("/endpoints/{endpoint_id}/test-filter", response_model=VerdictOut, tags=["endpoints"])
    def test_filter(
        endpoint_id: EndpointId, body: TestFilterIn, caller: Caller, tenant: TenantQuery = None
    ) -> VerdictOut:
        """Say whether an event with this payload would be delivered to the endpoint, and why not.

        Nothing is published or sent.
        """
        with services.connection() as conn:
            ep = services.endpoints(conn).get(endpoint_id, tenant_id=caller.scope(tenant))
        return VerdictOut(**asdict(verdict(ep, body.data, body.event_type)))

    @v1.post("/endpoints/{endpoint_id}/test", tags=["endpoints"], responses=problem_responses(429))
    def test_endpoint(
        endpoint_id: EndpointId,
        caller: Caller,
        tenant: TenantQuery = None,
        body: Annotated[TestIn | None, Body()] = None,
    ) -> dict[str, Any]:
        """Send a test event to the endpoint now; answer with the attempt.

        One tenant's tests run a few at a time: beyond, 429 with Retry-After.
        """
        scope = caller.scope(tenant)
        try:
            with services.tests.taken(caller.key):
                # No connection is held while the receiver answers (worker.ops.ping).
                attempt = services.send_test_event(
                    endpoint_id,
                    event_type=body.event_type if body is not None else ping.TEST_EVENT_TYPE,
                    tenant_id=scope,
                )
        except Full as exc:
            raise Problem(
                429,
                f"{exc.detail}: try again in {exc.retry_after}s",
                kind="too-many-tests",
                title="Too many endpoint tests in flight",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        return {**asdict(attempt), "ok": attempt.ok}
