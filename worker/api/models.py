"""The request and response bodies of the HTTP API.

Every request body refuses unknown fields (``extra="forbid"``) and bounds every string and
list, so bad input is a 422 naming the field before the service layer is called; the
service layer's own checks (URL, headers, event types) still apply after.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from worker.ops.endpoints import MAX_HEADERS, MAX_URL, Endpoint

T = TypeVar("T")

EventType = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Tenant = Annotated[str, StringConstraints(min_length=1, max_length=128)]
HeaderName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
HeaderValue = Annotated[str, StringConstraints(max_length=4096)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL)]
Description = Annotated[str, StringConstraints(max_length=1000)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
BigId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class EndpointIn(Strict):
    """Register an endpoint."""

    url: Url
    description: Description = ""
    event_types: list[EventType] | None = Field(
        None, max_length=100, description="Deliver only these types; null or absent: all."
    )
    headers: dict[HeaderName, HeaderValue] | None = Field(None, max_length=MAX_HEADERS)
    rate_limit: int | None = Field(None, ge=1, le=1_000_000, description="Requests per second.")
    tenant: Tenant | None = Field(None, description="Admin keys only; default 'default'.")


class EndpointPatch(Strict):
    """Change an endpoint; absent fields keep their value, null clears the nullable ones."""

    url: Url | None = None
    description: Description | None = None
    event_types: list[EventType] | None = Field(None, max_length=100)
    headers: dict[HeaderName, HeaderValue] | None = Field(None, max_length=MAX_HEADERS)
    rate_limit: int | None = Field(None, ge=1, le=1_000_000)


class EndpointOut(BaseModel):
    """An endpoint (never its secrets)."""

    id: str
    tenant_id: str
    url: str
    description: str
    event_types: list[str] | None
    headers: dict[str, str] = Field(
        description="Custom headers; values redacted except in the answer that set them."
    )
    rate_limit: int | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    consecutive_failures: int
    circuit: str

    @classmethod
    def of(cls, ep: Endpoint) -> EndpointOut:
        """Build from the service layer's endpoint."""
        return cls(
            id=ep.id,
            tenant_id=ep.tenant_id,
            url=ep.url,
            description=ep.description,
            event_types=list(ep.event_types) if ep.event_types is not None else None,
            headers=ep.headers,
            rate_limit=ep.rate_limit,
            enabled=ep.enabled,
            disabled_reason=ep.disabled_reason,
            disabled_at=ep.disabled_at,
            failing_since=ep.failing_since,
            created_at=ep.created_at,
            consecutive_failures=ep.consecutive_failures,
            circuit="open" if ep.circuit.startswith("open") else ep.circuit,
        )


class EndpointCreated(EndpointOut):
    """A new endpoint with its signing secret, shown only in this answer."""

    secret: str


class SecretOut(BaseModel):
    """A new signing secret, shown only in this answer."""

    id: str
    secret: str


class RotateIn(Strict):
    """How long the old secrets keep signing."""

    grace_seconds: float = Field(86400.0, ge=0, le=30 * 86400)


class DisableIn(Strict):
    """Why an endpoint is disabled."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = "disabled by operator"


class TestIn(Strict):
    """The event type of a test event."""

    event_type: EventType = "webhooks.test"


class Deleted(BaseModel):
    """What went with a deleted endpoint."""

    id: str
    deliveries: int
    pending: int
    dead_letters: int


class EventIn(Strict):
    """Publish one event (the Idempotency-Key header makes it publish once)."""

    event_type: EventType
    data: Any = Field(..., description="The payload: any JSON value.")
    tenant: Tenant | None = Field(None, description="Admin keys only; default 'default'.")


class ReplayIn(Strict):
    """Which dead letters to replay; at least one criterion or ``all``."""

    ids: list[BigId] = Field(default_factory=list, max_length=10_000)
    endpoint_id: Id | None = None
    event_type: EventType | None = None
    since: datetime | None = None
    reason: Annotated[str, StringConstraints(max_length=64)] | None = None
    all: bool = False
    limit: int | None = Field(None, ge=1)
    dry_run: bool = False
    enable_endpoints: bool = False
    tenant: Tenant | None = Field(None, description="Admin keys only.")


class FieldError(BaseModel):
    """One field at fault in a 422 answer."""

    field: str
    message: str


class ProblemOut(BaseModel):
    """An RFC 9457 problem (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return the OpenAPI ``responses`` of routes that answer these problem statuses."""
    return {
        status: {
            # The model registers the schema; `problem_media_type` moves it under its
            # media type (FastAPI files it under application/json).
            "model": ProblemOut,
            "description": "An RFC 9457 problem (application/problem+json).",
        }
        for status in statuses
    }


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next (null: the end)."""

    items: list[T]
    next_cursor: str | None


def problem_media_type(spec: dict[str, Any]) -> dict[str, Any]:
    """Document problem answers as ``application/problem+json``, the type they are sent as."""
    ref = {"$ref": "#/components/schemas/ProblemOut"}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for answer in operation.get("responses", {}).values():
                content = answer.get("content", {})
                if content.get("application/json", {}).get("schema") == ref:
                    answer["content"] = {"application/problem+json": {"schema": ref}}
    return spec
