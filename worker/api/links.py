"""The /v1/portal-links route: a platform's backend makes a link into the tenant portal."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations.
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from worker.api.auth import CallerDependency, Principal, Services
from worker.api.models import Strict, Tenant, problem_responses
from worker.api.problems import Problem
from worker.ops.portal import MAX_LINK_TTL


class PortalLinkIn(Strict):
    """Make a portal link: for one tenant, or (admin keys only) every tenant."""

    # An admin link names no tenant: the document says so, as the server does (422).
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["admin", "tenant"],
                "properties": {"admin": {"const": True}, "tenant": {"type": "string"}},
            }
        }
    )

    tenant: Tenant | None = Field(
        None, description="The tenant the portal shows; a tenant key's own by default."
    )
    admin: bool = Field(False, description="Admin keys only: every tenant, with a switcher.")
    ttl_seconds: float | None = Field(
        None, gt=0, le=MAX_LINK_TTL, description="Default WEBHOOKS_PORTAL_LINK_TTL (15m)."
    )
    read_only: bool = False
    secrets: bool = Field(True, description="May the session reveal and rotate secrets.")


class PortalLinkOut(BaseModel):
    """A single-use link: hand ``url`` to the person before ``expires_at``."""

    id: int
    url: str
    expires_at: str


def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the portal-link route."""
    v1 = APIRouter()
    Caller = Annotated[Principal, Depends(principal)]

    @v1.post(
        "/portal-links",
        status_code=201,
        response_model=PortalLinkOut,
        tags=["portal"],
        responses=problem_responses(403),
    )
    def create_portal_link(body: PortalLinkIn, caller: Caller) -> PortalLinkOut:
        """Make a single-use, short-lived link that opens the portal for a tenant."""
        if body.admin and (not caller.admin or body.tenant is not None):
            raise Problem(
                403 if not caller.admin else 422,
                "only an admin key makes admin links"
                if not caller.admin
                else "an admin link names no tenant",
                kind="forbidden" if not caller.admin else "invalid-value",
                title="Not allowed" if not caller.admin else None,
            )
        tenant = None if body.admin else caller.owner(body.tenant)
        made = services.portal_link(
            tenant,
            ttl=body.ttl_seconds,
            read_only=body.read_only,
            reveal_secrets=body.secrets,
            created_by=caller.name,
        )
        return PortalLinkOut(id=made.id, url=made.url, expires_at=made.expires_at.isoformat())

    return v1
