"""The event-type catalogue under hostile input: tenant keys cannot write it, a schema never
makes the server fetch anything, and a huge or deeply nested schema is bounded."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from producers.errors import InvalidSchema
from producers.schemas import check_schema, first_error
from tests.pipeline import LOOPBACK
from worker.api import create_app
from worker.api.limits import body_cap
from worker.ops import apikeys
from worker.settings import Settings

MAX_PAYLOAD = 4096


@pytest.fixture
def client(db_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url,
        redis_url=redis_url,
        allowed_networks=LOOPBACK,
        max_payload_bytes=MAX_PAYLOAD,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.services.close()


def bearer(db_url: str, tenant: str | None) -> dict[str, str]:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return {"authorization": f"Bearer {apikeys.create(conn, 'k', tenant_id=tenant)[1]}"}


@pytest.fixture
def hits() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every path asked of it."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("content-type", "application/schema+json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_tenant_key_cannot_write_the_catalogue(client: TestClient, db_url: str) -> None:
    tenant = bearer(db_url, "acme")
    made = client.post("/v1/event-types", json={"name": "a.b"}, headers=tenant)
    assert made.status_code == 403
    admin = bearer(db_url, None)
    assert client.post("/v1/event-types", json={"name": "a.b"}, headers=admin).status_code == 201
    for answer in (
        client.patch("/v1/event-types/a.b", json={"description": "x"}, headers=tenant),
        client.post("/v1/event-types/a.b/archive", headers=tenant),
        client.post("/v1/event-types/a.b/deprecate", headers=tenant),
    ):
        assert answer.status_code == 403, answer.text
    shown = client.get("/v1/event-types/a.b", headers=tenant).json()
    assert (shown["description"], shown["archived"], shown["deprecated"]) == ("", False, False)


def test_a_remote_ref_is_refused_and_never_fetched(
    client: TestClient, db_url: str, hits: tuple[str, list[str]]
) -> None:
    base, seen = hits
    admin = bearer(db_url, None)
    for schema in (
        {"$ref": f"{base}/a.json"},
        {"properties": {"x": {"$ref": f"{base}/b.json#/x"}}},
        {"$id": f"{base}/root.json", "properties": {"x": {"$ref": "c.json"}}},
        {"$dynamicRef": f"{base}/d.json"},
        {"$schema": f"{base}/meta.json"},
    ):
        answer = client.post(
            "/v1/event-types",
            json={"name": "a.b", "schema": schema, "example": "x"},
            headers=admin,
        )
        assert answer.status_code == 422, (schema, answer.text)
    # A local reference under a remote $id resolves inside the schema.
    local = {"$id": f"{base}/root.json", "$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"}
    check_schema(local)
    assert first_error(local, 5) == 'data: 5 is not of type "string"'
    assert seen == []


def test_a_deeply_nested_schema_is_refused_not_a_crash(client: TestClient, db_url: str) -> None:
    admin = bearer(db_url, None)
    deep: Any = {"type": "string"}
    for _ in range(200):
        deep = {"items": deep}
    answer = client.post("/v1/event-types", json={"name": "a.b", "schema": deep}, headers=admin)
    assert answer.status_code == 422 and "nests deeper than" in answer.text
    # Deeper than the JSON parser goes: refused as a body, not a 500.
    depth = 3000
    raw = '{"name": "a.b", "schema": ' + '{"not": ' * depth + "{}" + "}" * depth + "}"
    assert len(raw) < body_cap(MAX_PAYLOAD)
    answer = client.post(
        "/v1/event-types",
        content=raw,
        headers={**admin, "content-type": "application/json"},
    )
    assert 400 <= answer.status_code < 500, answer.text
    with pytest.raises(InvalidSchema):
        check_schema(deep)


def test_a_huge_schema_is_bounded_by_the_body_cap(client: TestClient, db_url: str) -> None:
    admin = bearer(db_url, None)
    huge = {"properties": {f"p{i}": {"type": "string"} for i in range(20_000)}}
    answer = client.post("/v1/event-types", json={"name": "a.b", "schema": huge}, headers=admin)
    assert answer.status_code == 413, answer.text
