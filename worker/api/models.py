"""The request and response bodies of the HTTP API.

Every request body refuses unknown fields (``extra="forbid"``) and bounds every string and
list, so bad input is a 422 naming the field before the service layer is called; the
service layer's own checks (URL, headers, event types) still apply after.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema

from producers.names import EVENT_TYPE, MAX_EVENT_TYPE, MAX_TENANT, TENANT
from producers.publish import MAX_ORDERING_KEY
from worker.api import filter_schema
from worker.api.filter_schema import FilterValue
from worker.ops.endpoints import MAX_HEADERS, MAX_URL, Endpoint
from worker.ops.validation import HEADER_NAME, HEADER_VALUE, MAX_HEADER_VALUE
from worker.policy import filters
from worker.policy.destination import is_local_name, refusal, target
from worker.policy.guard import parse_ip_literal
from worker.policy.headers import RESERVED_HEADERS
from worker.policy.retry import DeadReason

T = TypeVar("T")

#: The largest integer Postgres' bigint holds (ids, limits).
BIG = 2**63 - 1


def whole(pattern: re.Pattern[str]) -> str:
    """Return a pattern the whole value must match, in the syntax JSON Schema and pydantic share.

    The server's own checks use ``fullmatch``; a JSON Schema pattern matches anywhere unless
    anchored, and ``$`` there (as in pydantic's engine) is the end of the text.
    """
    return f"^(?:{pattern.pattern})$"


def _any_case(name: str) -> str:
    # JSON Schema patterns have no flags: "host" is written "[Hh][Oo][Ss][Tt]".
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)


#: The names the delivery sets itself (worker.ops.validation refuses them, in any case).
RESERVED_HEADER_NAMES = (
    "^(?:"
    + "|".join(
        [_any_case(name) for name in sorted(RESERVED_HEADERS)]
        + [_any_case(prefix) + ".*" for prefix in ("webhook-", "proxy-")]
    )
    + ")$"
)
#: An http(s) URL in ASCII whose host is a name (its last label starts with a letter), with
#: an optional port (1-65535), path and query, no credentials, fragment or white space: every
#: URL of this form can be registered. The one URL outside it the server accepts: the same
#: form with an IP address as host, when the address may be delivered to
#: (WEBHOOKS_ALLOWED_NETWORKS), which no pattern can say: `check_destination` decides.
URL_PATTERN = (
    r"^https?://(?:[A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*\.?"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r'(?:[/?][!"$-~]*)?$'
)
URL_HELP = (
    "An http(s) URL with a host name, as the pattern says. A URL whose host is an IP address"
    " is accepted as well when the address is public or in WEBHOOKS_ALLOWED_NETWORKS, and"
    " localhost only when loopback is in WEBHOOKS_ALLOWED_NETWORKS; otherwise 422."
)
_URL = re.compile(URL_PATTERN)
_HOST = re.compile(r"(https?://)(\[[^\]/?#]*\]|[^/?#:\[\]@]*)(.*)", re.DOTALL)


def _url_form(value: object) -> object:
    """Refuse a URL outside the pattern, unless only its host differs: an IP address."""
    if not isinstance(value, str) or _URL.fullmatch(value):
        return value
    split = _HOST.fullmatch(value)
    if (
        split is not None
        and parse_ip_literal(split[2].strip("[]")) is not None
        and _URL.fullmatch(split[1] + "ip" + split[3])
    ):
        return value  # whether it may be delivered to is `check_destination`'s to say
    if not value.isascii():
        raise ValueError(_not_ascii(value))
    raise ValueError("must be an http(s) URL with a host name or an IP address (see pattern)")


def _not_ascii(value: str) -> str:
    """Say how the sender reads a URL given in Unicode, and so how to write it in ASCII."""
    try:
        where = target(value)
    except ValueError:
        return "must be an http(s) URL in ASCII (see pattern)"
    reason = refusal(where, ())
    if reason is not None and where.address is not None:
        seen = f"a {reason}"
    elif is_local_name(where.host):
        seen = f"{where.host}, a name of this machine"
    else:
        return f"must be ASCII: write its host as {where.host}"
    # The spelling hides a host the guard blocks unless an operator allowed it.
    return (
        f"must be ASCII: its host is read as {seen}, outside the public ones; only"
        f" WEBHOOKS_ALLOWED_NETWORKS can allow it, written as {where.host}"
    )


#: Text Postgres can store: anything but the NUL character.
NO_NUL = r"^[^\x00]*$"

EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_EVENT_TYPE, pattern=whole(EVENT_TYPE))
]
#: A subscription: an event type, or a pattern with `*` segments (`order.*`, `*`); the
#: service layer checks that each `*` is a whole segment (producers.names).
EventPattern = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_EVENT_TYPE,
        pattern=r"^(?:\*|[A-Za-z0-9][A-Za-z0-9_:/-]*)(?:\.(?:\*|[A-Za-z0-9_:/-]*))*$",
    ),
]
FILTER_HELP = "Deliver only events that pass this filter; null or absent: every event."
OrderingKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ORDERING_KEY, pattern=NO_NUL)
]
Tenant = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TENANT, pattern=whole(TENANT))
]
HeaderName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=whole(HEADER_NAME))
]
HeaderValue = Annotated[
    str, StringConstraints(max_length=MAX_HEADER_VALUE, pattern=whole(HEADER_VALUE))
]
#: Custom headers: names are HTTP tokens other than the reserved ones, values ASCII text.
Headers = Annotated[
    dict[HeaderName, HeaderValue],
    Field(max_length=MAX_HEADERS),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_HEADERS,
            "propertyNames": {
                "minLength": 1,
                "maxLength": 256,
                "pattern": whole(HEADER_NAME),
                "not": {"pattern": RESERVED_HEADER_NAMES},
            },
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_HEADER_VALUE,
                "pattern": whole(HEADER_VALUE),
            },
            "description": "Sent with every delivery; not the ones the delivery sets itself"
            " (Host, Content-Type, webhook-*, proxy-*, ...).",
        }
    ),
]
Url = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_URL),
    AfterValidator(_url_form),
    Field(json_schema_extra={"pattern": URL_PATTERN}),
]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]

#: A date-time as RFC 3339 writes it (the OpenAPI ``date-time`` format): a time offset is
#: required, and a number is not a time.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.upper()):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z")
    return datetime.fromisoformat(value.upper())


Moment = Annotated[datetime, BeforeValidator(_rfc3339)]
#: Any JSON value Postgres' jsonb can store: no NUL character in a string or a key.
JsonValue = Annotated[Any, WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/JsonValue"}]})]
_JSON_VALUE = {
    "description": "Any JSON value without the NUL character (jsonb cannot store it).",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
    ],
}


def _integer(value: object) -> object:
    # JSON Schema counts 2.0 as an integer (a number with no fraction), never true or "2".
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Integers as JSON Schema has them: 2 or 2.0, not 2.5, true or "2" (in strict models).
#: The bounds come first, or pydantic leaves them out of the document.
BigId = Annotated[int, Field(ge=1, le=BIG), BeforeValidator(_integer)]
RateLimit = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(_integer)]


class Strict(BaseModel):
    """A request body: unknown fields are refused, and no value is converted to another type.

    Strict as the document is: ``false`` is not a number, nor ``0`` a boolean.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


ORDERED_HELP = (
    "Deliver the events of one ordering_key one after another, in publish order (from the"
    " next event fanned out)."
)


class EndpointIn(Strict):
    """Register an endpoint."""

    url: Url = Field(description=URL_HELP)
    description: Description = ""
    event_types: list[EventPattern] | None = Field(
        None,
        max_length=100,
        description="Deliver only these types (or patterns: order.*, *); null or absent: all.",
    )
    headers: Headers | None = None
    rate_limit: RateLimit | None = Field(None, description="Requests per second.")
    tenant: Tenant | None = Field(None, description="Admin keys only; default 'default'.")
    filter: FilterValue | None = Field(None, description=FILTER_HELP)
    ordered: bool = Field(False, description=ORDERED_HELP)


class EndpointPatch(Strict):
    """Change an endpoint; absent fields keep their value, null clears the nullable ones."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Absent keeps the value; null is refused (422), so the document does not offer it.
    url: Url | SkipJsonSchema[None] = Field(None, description=URL_HELP)
    description: Description | SkipJsonSchema[None] = None
    event_types: list[EventPattern] | None = Field(None, max_length=100)
    headers: Headers | None = None
    rate_limit: RateLimit | None = None
    filter: FilterValue | None = Field(None, description=FILTER_HELP)
    ordered: bool | SkipJsonSchema[None] = Field(None, description=ORDERED_HELP)


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
    filter: dict[str, Any] | None = None
    ordered: bool = False

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
            filter=ep.filter,
            ordered=ep.ordered,
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

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NO_NUL)] = (
        "disabled by operator"
    )


class TestIn(Strict):
    """The event type of a test event."""

    event_type: EventType = "webhooks.test"


def _storable(value: Any) -> Any:
    # As the document says (JsonValue): a payload with NUL could never be published.
    if filters.has_nul(value):
        raise ValueError("must not contain the NUL character (jsonb cannot store it)")
    return value


class TestFilterIn(Strict):
    """A payload to try against an endpoint's event types and filter."""

    data: Annotated[JsonValue, AfterValidator(_storable)] = Field(
        ..., description="The payload: any JSON value."
    )
    event_type: EventType | None = Field(
        None, description="Default: the endpoint's first plain event type, else webhooks.test."
    )


class VerdictOut(BaseModel):
    """Whether the relay would deliver such an event to the endpoint, and if not why."""

    endpoint_id: str
    event_type: str
    delivered: bool
    reason: str | None


class Deleted(BaseModel):
    """What went with a deleted endpoint."""

    id: str
    deliveries: int
    pending: int
    dead_letters: int


class EventIn(Strict):
    """Publish one event (the Idempotency-Key header makes it publish once)."""

    event_type: EventType
    data: JsonValue = Field(..., description="The payload: any JSON value.")
    tenant: Tenant | None = Field(None, description="Admin keys only; default 'default'.")
    ordering_key: OrderingKey | None = Field(
        None,
        description="Ordered endpoints receive the events of one key one after another,"
        " in publish order.",
    )


def _chosen(field: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": [field], "properties": {field: schema}}


class LettersIn(Strict):
    """Which dead letters; at least one criterion or ``all``."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                _chosen("ids", {"minItems": 1}),
                *(
                    _chosen(field, {"not": {"type": "null"}})
                    for field in ("endpoint_id", "event_type", "since", "reason")
                ),
                _chosen("all", {"const": True}),
            ]
        }
    )

    ids: list[BigId] = Field(default_factory=list, max_length=10_000)
    endpoint_id: Id | None = None
    event_type: EventType | None = None
    since: Moment | None = None
    reason: DeadReason | None = None
    all: bool = False
    dry_run: bool = False
    tenant: Tenant | None = Field(None, description="Admin keys only.")


class ReplayIn(LettersIn):
    """Which dead letters to replay; at least one criterion or ``all``."""

    limit: BigId | None = None
    enable_endpoints: bool = False


class DiscardIn(LettersIn):
    """Which dead letters to give up for good; at least one criterion or ``all``."""


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


def finish_document(spec: dict[str, Any]) -> dict[str, Any]:
    """Return FastAPI's OpenAPI document as strict as the server: see the functions below."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["JsonValue"] = _JSON_VALUE
    schemas["Filter"] = filter_schema.SCHEMA
    return problem_media_type(integer_bounds(spec))


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


def integer_bounds(node: Any) -> Any:
    """Write the bounds of integer schemas as integers, exactly, in place; return ``node``.

    FastAPI's OpenAPI model holds ``minimum``/``maximum`` as floats: 1 became 1.0, and the
    largest bigint (2**63 - 1, not a float) became 2**63, a maximum the server refuses.
    """
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                bound = node.get(key)
                if isinstance(bound, float):
                    node[key] = BIG if bound == float(BIG) else int(bound)
        for value in node.values():
            integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            integer_bounds(value)
    return node
