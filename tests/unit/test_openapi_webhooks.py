"""Reading the event types of an OpenAPI document's webhooks (`webhooks event-type import`)."""

from __future__ import annotations

from typing import Any

import pytest

from producers.errors import InvalidSchema
from producers.schemas import check_schema, first_error
from worker.ops.openapi_webhooks import declared

MONEY = {"type": "object", "properties": {"amount": {"type": "number"}}}


def doc(webhooks: dict[str, Any], version: str = "3.1.0", **components: Any) -> dict[str, Any]:
    key = "webhooks" if version.startswith("3.1") else "x-webhooks"
    return {
        "openapi": version,
        "info": {"title": "t", "version": "1"},
        key: webhooks,
        "components": components,
    }


def operation(schema: Any, **more: Any) -> dict[str, Any]:
    return {
        "post": {
            "requestBody": {"content": {"application/json": {"schema": schema, **more}}},
            "responses": {"200": {"description": "ok"}},
        }
    }


def test_each_key_is_a_type_with_summary_tag_schema_and_example() -> None:
    item = operation(MONEY, example={"amount": 1})
    item["post"] |= {"summary": "Invoice paid", "description": "long", "tags": ["billing"]}
    (entry,) = declared(doc({"invoice.paid": item}))
    assert (entry.name, entry.description, entry.group) == (
        "invoice.paid",
        "Invoice paid",
        "billing",
    )
    assert entry.schema == MONEY and entry.example == {"amount": 1}


def test_x_webhooks_of_openapi_3_0_and_examples_and_descriptions() -> None:
    item = operation(MONEY, examples={"first": {"value": {"amount": 2}}})
    item["post"]["description"] = "Described"
    (entry,) = declared(doc({"a.b": item}, version="3.0.3"))
    assert entry.description == "Described" and entry.example == {"amount": 2}


def test_refs_into_components_become_defs_and_the_envelope_gives_data() -> None:
    components = {
        "schemas": {
            "Envelope": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "timestamp": {"type": "string"},
                    "data": {"$ref": "#/components/schemas/Order"},
                },
            },
            "Order": {
                "type": "object",
                "properties": {
                    "total": {"$ref": "#/components/schemas/Money"},
                    "parent": {"$ref": "#/components/schemas/Order"},
                },
            },
            "Money": MONEY,
        },
        "requestBodies": {
            "OrderBody": {
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Envelope"},
                        "example": {"type": "order.paid", "timestamp": "t", "data": {"total": {}}},
                    }
                }
            }
        },
    }
    item = {"post": {"requestBody": {"$ref": "#/components/requestBodies/OrderBody"}}}
    (entry,) = declared(doc({"order.paid": item}, **components))
    assert entry.example == {"total": {}}
    assert entry.schema["properties"]["total"] == {"$ref": "#/$defs/Money"}
    assert set(entry.schema["$defs"]) == {"Money", "Order"}
    check_schema(entry.schema)
    assert first_error(entry.schema, {"total": {"amount": "x"}}) == (
        'data.total.amount: "x" is not of type "number"'
    )
    assert first_error(entry.schema, {"parent": {"parent": {"total": {"amount": 1}}}}) is None


def test_no_body_is_a_type_without_schema() -> None:
    (entry,) = declared(doc({"ping": {"post": {"summary": "Ping"}}}))
    assert entry.schema is None and entry.example is None and entry.description == "Ping"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"openapi": "3.1.0", "paths": {}}, "openapi.yaml: no webhooks"),
        (doc({}), "openapi.yaml: no webhooks"),
        ([1, 2], "not an OpenAPI document"),
        (doc({"a": {"summary": "no operation"}}), "openapi.yaml: webhooks.a: no operation"),
        (
            doc({"a": operation({"$ref": "#/components/schemas/Missing"})}),
            "webhooks.a.schema: $ref '#/components/schemas/Missing' names nothing",
        ),
        (
            doc({"a": operation({"$ref": "other.yaml#/Money"})}),
            "only references inside the document",
        ),
    ],
)
def test_a_document_without_usable_webhooks_is_refused_saying_where(
    document: Any, message: str
) -> None:
    with pytest.raises(InvalidSchema) as caught:
        declared(document, "openapi.yaml")
    assert message in str(caught.value)
