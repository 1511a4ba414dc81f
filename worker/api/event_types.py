"""The /v1/event-types routes: the catalogue, read by every key, written by admin keys."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and
# `Caller` is local to the builder, where only evaluated annotations can see it.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from producers.errors import PayloadMismatch
from worker.api.auth import CallerDependency, Principal, Services
from worker.api.models import (
    NO_NUL,
    Description,
    EventType,
    JsonValue,
    Strict,
    problem_responses,
)
from worker.api.paging import decode_cursor, fast
from worker.api.params import Limit, NameCursor
from worker.api.problems import Problem
from worker.ops import event_types as catalogue
from worker.ops.event_types import MAX_GROUP, UNSET, Shown

#: One line of text: the group a type is listed under.
Group = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_GROUP, pattern=r"^[^\x00\r\n]+$")
]
#: A type named in a path: any event type without ``/`` (a name with one is listed, not
#: addressed by path).
Name = Annotated[
    str,
    Path(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]
#: A JSON Schema, as an object, which the server checks against its metaschema.
SchemaValue = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        }
    ),
]
_SCHEMA = "JSON Schema of the payload (`data`); draft 2020-12 unless `$schema` names another."
_EXAMPLE = (
    "An example payload, checked against the schema (without one, kept under `{}`, which"
    " takes any payload)."
)


class EventTypeIn(Strict):
    """Add a type to the catalogue, with its first schema version when ``schema`` is given."""

    name: EventType
    description: Description = ""
    group: Group | None = None
    json_schema: SchemaValue | None = Field(None, alias="schema", description=_SCHEMA)
    example: JsonValue | None = Field(None, description=_EXAMPLE)


class EventTypePatch(Strict):
    """Change a type: a ``schema`` adds a version (earlier ones are kept); an ``example`` is
    checked against the new schema, else the latest. Absent fields keep their value."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    description: Description | SkipJsonSchema[None] = None
    group: Group | None = Field(None, description="null: no group.")
    json_schema: SchemaValue | None = Field(None, alias="schema", description=_SCHEMA)
    example: JsonValue | None = Field(None, description=_EXAMPLE)


def _document(shown: Shown) -> dict[str, Any]:
    return {**_fields(shown.event_type), "versions": shown.versions}


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}


def router(services: Services, principal: CallerDependency) -> APIRouter:
    """Return the event-type routes, in the order the OpenAPI document lists them."""
    v1 = APIRouter()
    Caller = Annotated[Principal, Depends(principal)]
    tags: list[str | Any] = ["event types"]

    def admin(caller: Principal) -> None:
        if not caller.admin:
            raise Problem(
                403,
                "only an admin key writes the event-type catalogue",
                kind="forbidden",
                title="Not allowed",
            )

    @v1.get("/event-types", tags=tags, response_model=dict[str, Any])
    def list_event_types(
        caller: Caller,
        group: Annotated[Group | None, Query(description="Only this group's types.")] = None,
        archived: Annotated[bool, Query(description="Include archived types.")] = False,
        limit: Limit = 50,
        cursor: NameCursor = None,
    ) -> Response:
        """List the catalogue by name, each type with its latest schema and example."""
        after = decode_cursor(cursor, str)
        with services.connection() as conn:
            rows = catalogue.list_types(
                conn, group=group, archived=archived, after=after[0] if after else None,
                limit=limit + 1,
            )  # fmt: skip
        more = len(rows) > limit
        rows = rows[:limit]
        return fast({"items": rows, "next_cursor": rows[-1].name if more and rows else None})

    @v1.post(
        "/event-types",
        status_code=201,
        tags=tags,
        response_model=dict[str, Any],
        responses=problem_responses(403),
    )
    def create_event_type(body: EventTypeIn, caller: Caller) -> Response:
        """Add a type to the catalogue (admin keys)."""
        admin(caller)
        with services.connection() as conn:
            shown = catalogue.add(
                conn,
                body.name,
                description=body.description,
                group=body.group,
                schema=body.json_schema,
                example=body.example,
            )
        return fast(_document(shown), 201)

    @v1.get("/event-types/{name}", tags=tags, response_model=dict[str, Any])
    def get_event_type(name: Name, caller: Caller) -> Response:
        """Show a type with every schema version, oldest first."""
        with services.connection() as conn:
            return fast(_document(catalogue.show(conn, name)))

    @v1.patch(
        "/event-types/{name}",
        tags=tags,
        response_model=dict[str, Any],
        responses=problem_responses(403),
        description="Change a type (admin keys); a new schema adds a version. An example"
        " alone that the latest schema refuses is a 409.",
    )
    def update_event_type(name: Name, body: EventTypePatch, caller: Caller) -> Response:
        """Change a type (admin keys); a new schema adds a version."""
        admin(caller)
        given = body.model_fields_set
        if not given:
            raise Problem(422, "nothing to update: give a field", kind="invalid-value")
        if "description" in given and body.description is None:
            raise Problem(422, "description cannot be null", kind="invalid-value")
        try:
            with services.connection() as conn:
                shown = catalogue.update(
                    conn,
                    name,
                    description=body.description,
                    group=body.group if "group" in given else UNSET,
                    schema=body.json_schema,
                    example=body.example,
                )
        except PayloadMismatch as exc:
            if body.json_schema is not None:
                raise
            # The body is well formed; the type's current schema refuses its example.
            raise Problem(
                409, f"the latest schema of event type {name} refuses the example: {exc}"
            ) from None
        return fast(_document(shown))

    for which, verb in (("deprecated", "deprecate"), ("archived", "archive")):
        _flag_route(v1, services, Caller, admin, which, verb)
    return v1


def _flag_route(
    v1: APIRouter, services: Services, caller_type: Any, admin: Any, which: str, verb: str
) -> None:
    Undo = Annotated[bool, Query(description=f"Clear the flag: no longer {which}.")]

    def set_flag(name: Name, caller: caller_type, undo: Undo = False) -> Response:
        admin(caller)
        with services.connection() as conn:
            return fast(_fields(catalogue.flag(conn, name, which, not undo)))

    set_flag.__doc__ = f"Mark a type {which} (admin keys); `undo=true` clears it."
    v1.add_api_route(
        f"/event-types/{{name}}/{verb}",
        set_flag,
        methods=["POST"],
        tags=["event types"],
        response_model=dict[str, Any],
        responses=problem_responses(403),
        name=f"{verb}_event_type",
    )
