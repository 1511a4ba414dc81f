"""/v1/event-types: admin keys write the catalogue, tenant keys read it (real Postgres)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.test_api import PROBLEM, Api, make_key
from tests.pipeline import LOOPBACK
from worker.api import create_app
from worker.settings import Settings

INVOICE = {
    "type": "object",
    "required": ["amount"],
    "properties": {"amount": {"type": "number"}},
}


@pytest.fixture
def client(db_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, redis_url=redis_url, allowed_networks=LOOPBACK)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.services.close()


@pytest.fixture
def admin(client: TestClient, db_url: str) -> Api:
    return Api(client, make_key(db_url, None))


@pytest.fixture
def acme(client: TestClient, db_url: str) -> Api:
    return Api(client, make_key(db_url, "acme"))


def stored(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "select (select count(*) from webhooks.event_types),"
            " (select count(*) from webhooks.event_type_schemas)"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_admin_writes_and_every_key_reads(admin: Api, acme: Api) -> None:
    made = admin.call(
        "POST",
        "/v1/event-types",
        json={
            "name": "invoice.paid",
            "description": "An invoice was paid",
            "group": "billing",
            "schema": INVOICE,
            "example": {"amount": 3},
        },
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["latest_version"] == 1 and body["example"] == {"amount": 3}
    assert [v["version"] for v in body["versions"]] == [1]

    v2 = {**INVOICE, "properties": {"amount": {"type": "integer"}}}
    patched = admin.ok("PATCH", "/v1/event-types/invoice.paid", json={"schema": v2})
    assert patched["latest_version"] == 2 and patched["schema"] == v2
    assert patched["versions"][0]["schema"] == INVOICE
    assert admin.ok("PATCH", "/v1/event-types/invoice.paid", json={"group": None})["group"] is None

    shown = acme.ok("GET", "/v1/event-types/invoice.paid")
    assert shown["description"] == "An invoice was paid" and len(shown["versions"]) == 2
    listed = acme.ok("GET", "/v1/event-types")
    assert [t["name"] for t in listed["items"]] == ["invoice.paid"]
    assert listed["next_cursor"] is None


def test_a_tenant_key_cannot_write_the_catalogue(admin: Api, acme: Api, db_url: str) -> None:
    admin.ok("POST", "/v1/event-types", json={"name": "user.created"})
    for method, path, body in [
        ("POST", "/v1/event-types", {"name": "a.b"}),
        ("PATCH", "/v1/event-types/user.created", {"description": "mine"}),
        ("POST", "/v1/event-types/user.created/deprecate", None),
        ("POST", "/v1/event-types/user.created/archive", None),
    ]:
        answer = acme.call(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.headers["content-type"] == PROBLEM
    assert stored(db_url) == (1, 0)
    assert acme.ok("GET", "/v1/event-types/user.created")["description"] == ""


def test_keyset_pages_and_flags(admin: Api) -> None:
    for name in ("a.one", "b-two", "c.three", "d.four", "e.five"):
        admin.ok("POST", "/v1/event-types", json={"name": name})
    assert admin.ok("POST", "/v1/event-types/c.three/archive")["archived"] is True
    assert admin.ok("POST", "/v1/event-types/a.one/deprecate")["deprecated"] is True
    first = admin.ok("GET", "/v1/event-types", params={"limit": 2})
    assert [t["name"] for t in first["items"]] == ["a.one", "b-two"]
    second = admin.ok("GET", "/v1/event-types", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [t["name"] for t in second["items"]] == ["d.four", "e.five"]
    every = admin.ok("GET", "/v1/event-types", params={"archived": "true"})
    assert len(every["items"]) == 5
    undone = admin.ok("POST", "/v1/event-types/c.three/archive", params={"undo": "true"})
    assert undone["archived"] is False


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "x.y", "schema": {"type": "nope"}}, "schema is not valid JSON Schema"),
        ({"name": "x.y", "schema": INVOICE, "example": {"amount": "1"}}, "example.amount"),
        ({"name": "x.y", "schema": {"$ref": "https://example.com/s.json"}}, "only local"),
        ({"name": "x.y", "schema": True}, "schema"),
        ({"name": "bad name"}, "name"),
    ],
)
def test_bad_input_is_a_422_and_nothing_is_written(
    admin: Api, db_url: str, body: dict[str, Any], fragment: str
) -> None:
    answer = admin.call("POST", "/v1/event-types", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert fragment in answer.text
    assert stored(db_url) == (0, 0)


def test_an_example_without_a_schema_and_one_the_latest_schema_refuses(admin: Api) -> None:
    made = admin.ok("POST", "/v1/event-types", json={"name": "a.b", "example": {"x": 1}})
    assert (made["latest_version"], made["schema"], made["example"]) == (1, {}, {"x": 1})
    admin.ok("PATCH", "/v1/event-types/a.b", json={"schema": INVOICE})
    refused = admin.call("PATCH", "/v1/event-types/a.b", json={"example": {"amount": "1"}})
    assert refused.status_code == 409, refused.text
    assert 'example.amount: "1" is not of type "number"' in refused.json()["detail"]
    both = admin.call(
        "PATCH", "/v1/event-types/a.b", json={"schema": INVOICE, "example": {"amount": "1"}}
    )
    assert both.status_code == 422, both.text
    assert admin.ok("GET", "/v1/event-types/a.b")["latest_version"] == 2


def test_conflicts_and_absences(admin: Api) -> None:
    admin.ok("POST", "/v1/event-types", json={"name": "a.b"})
    assert admin.call("POST", "/v1/event-types", json={"name": "a.b"}).status_code == 409
    assert admin.call("GET", "/v1/event-types/no.such").status_code == 404
    assert admin.call(
        "PATCH", "/v1/event-types/no.such", json={"description": "x"}
    ).status_code == (404)
    assert admin.call("GET", "/v1/event-types", params={"cursor": "-bad"}).status_code == 422


def test_an_endpoint_subscribing_to_an_archived_type_is_logged(
    admin: Api, caplog: pytest.LogCaptureFixture
) -> None:
    admin.ok("POST", "/v1/event-types", json={"name": "order.shipped"})
    admin.ok("POST", "/v1/event-types/order.shipped/archive")
    with caplog.at_level(logging.WARNING):
        admin.ok(
            "POST",
            "/v1/endpoints",
            json={"url": "http://127.0.0.1:9/h", "event_types": ["order.shipped"]},
        )
    # Logged, not refused: the endpoint's answer has no place for warnings.
    assert "event type order.shipped is archived in the event-type catalogue" in caplog.text


def test_a_pattern_naming_an_archived_type_is_told_so(conn: psycopg.Connection[Any]) -> None:
    from worker.ops import event_types

    event_types.add(conn, "order.shipped")
    event_types.add(conn, "order.paid")
    event_types.flag(conn, "order.shipped", "archived", True)
    told = event_types.archived_subscriptions(conn, ["order.*", "*", "order.paid", "user.*"])
    assert told == ["event type pattern order.* matches archived event type(s): order.shipped"]
