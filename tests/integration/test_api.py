"""The management HTTP API (issue 17): real Postgres, the app over HTTP, the real pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import standardwebhooks
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from producers import publish_many
from tests.daemons import free_port
from tests.helpers import run_cli
from tests.pipeline import LOOPBACK, Pipeline
from tests.receiver import Answer, Receiver
from worker.api import Principal, create_app
from worker.api.openapi import render
from worker.ops import apikeys
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
#: Small, so the 413 test needs only a small body.
MAX_PAYLOAD = 2048


class Api:
    """A client of the app holding one key's Authorization header."""

    def __init__(self, client: TestClient, key: str | None) -> None:
        self.client = client
        self.headers = {"authorization": f"Bearer {key}"} if key else {}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.call(method, path, **kwargs)
        assert answer.status_code < 300, (answer.status_code, answer.text)
        return answer.json()


@pytest.fixture
def settings(db_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        redis_url=redis_url,
        allowed_networks=LOOPBACK,
        retry_schedule=(0, 0.2, 0.4),
        request_timeout=3.0,
        max_payload_bytes=MAX_PAYLOAD,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    app.state.services.close()


def make_key(db_url: str, tenant: str | None) -> str:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return apikeys.create(conn, f"key of {tenant or 'admin'}", tenant_id=tenant)[1]


@pytest.fixture
def acme(client: TestClient, db_url: str) -> Api:
    return Api(client, make_key(db_url, "acme"))


@pytest.fixture
def globex(client: TestClient, db_url: str) -> Api:
    return Api(client, make_key(db_url, "globex"))


@pytest.fixture
def admin(client: TestClient, db_url: str) -> Api:
    return Api(client, make_key(db_url, None))


def count(db_url: str, table: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"select count(*) from webhooks.{table}").fetchone()
    assert row is not None
    return int(row[0])


def wait_for(check: Any, timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_publish_reaches_the_receiver_signed_and_attempts_resend_and_replay_work(
    acme: Api, pipeline: Pipeline, receiver: Receiver
) -> None:
    healthy = threading.Event()

    def flaky(_: int) -> Answer:
        return (200, {}, b"ok") if healthy.is_set() else (500, {}, b"down")

    receiver.on("/flaky", flaky)
    pipeline.start_relay()
    pipeline.start_worker()
    made = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/hook")})
    assert made["secret"].startswith("whsec_") and made["tenant_id"] == "acme"
    assert "secret" not in acme.ok("GET", f"/v1/endpoints/{made['id']}")

    tested = acme.ok("POST", f"/v1/endpoints/{made['id']}/test")
    assert tested["ok"] and tested["status_code"] == 200 and tested["trigger"] == "test"
    standardwebhooks.Webhook(made["secret"]).verify(
        receiver.wait_for("/hook", 1)[0].body, receiver.wait_for("/hook", 1)[0].headers
    )
    receiver.requests.clear()

    event = acme.ok("POST", "/v1/events", json={"event_type": "invoice.paid", "data": {"n": 1}})
    request = receiver.wait_for("/hook", 1)[0]
    standardwebhooks.Webhook(made["secret"]).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == event["id"]

    def delivered() -> Any:
        items = acme.ok("GET", "/v1/deliveries", params={"event_id": event["id"]})["items"]
        return items if items and items[0]["status"] == "succeeded" else None

    delivery = wait_for(delivered, what="the delivery to succeed")[0]
    shown = acme.ok("GET", f"/v1/deliveries/{delivery['id']}")
    assert [a["status_code"] for a in shown["attempts"]] == [200]
    assert acme.ok("GET", f"/v1/events/{event['id']}")["deliveries"][0]["id"] == delivery["id"]

    retried = acme.call("POST", f"/v1/deliveries/{delivery['id']}/retry")
    assert retried.status_code == 409 and retried.headers["content-type"] == PROBLEM
    resent = acme.ok("POST", f"/v1/deliveries/{delivery['id']}/resend")
    assert resent["previous_status"] == "succeeded"
    assert receiver.wait_for("/hook", 2)[1].headers["webhook-id"] == event["id"]

    # A delivery that dies, replayed through the API once the receiver is fixed.
    broken = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/flaky")})
    acme.ok("POST", "/v1/events", json={"event_type": "invoice.paid", "data": {"n": 2}})
    letters = wait_for(
        lambda: acme.ok("GET", "/v1/dead-letters", params={"endpoint_id": broken["id"]})["items"],
        what="a dead letter",
    )
    dry = acme.ok(
        "POST", "/v1/dead-letters/replay", json={"endpoint_id": broken["id"], "dry_run": True}
    )
    assert dry == {
        "replayed": 1,
        "enabled_endpoints": [],
        "dry_run": True,
        "disabled_endpoints": [],
        "out_of_order": 0,
    }
    healthy.set()
    done = acme.ok("POST", "/v1/dead-letters/replay", json={"ids": [letters[0]["delivery_id"]]})
    assert done["replayed"] == 1
    wait_for(
        lambda: (
            acme.ok("GET", f"/v1/deliveries/{letters[0]['delivery_id']}")["status"] == "succeeded"
        ),
        what="the replayed delivery to succeed",
    )
    assert acme.ok("GET", "/v1/status")["dead_letters"] == 0


def test_a_tenant_key_gets_404_for_every_other_tenants_id_on_every_route(
    acme: Api, globex: Api, admin: Api, pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.start_relay()
    ep = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/acme")})["id"]
    event = acme.ok("POST", "/v1/events", json={"event_type": "a.b", "data": {}})["id"]
    delivery = wait_for(
        lambda: acme.ok("GET", "/v1/deliveries")["items"], what="the relay's delivery"
    )[0]["id"]
    other = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/acme2")})["id"]
    acme.ok("POST", f"/v1/endpoints/{ep}/disable")  # its pending delivery is now a dead letter

    for method, path, body in [
        ("GET", f"/v1/endpoints/{ep}", None),
        ("PATCH", f"/v1/endpoints/{ep}", {"description": "mine now"}),
        ("DELETE", f"/v1/endpoints/{ep}", None),
        ("POST", f"/v1/endpoints/{ep}/rotate-secret", None),
        ("POST", f"/v1/endpoints/{ep}/enable", None),
        ("POST", f"/v1/endpoints/{other}/disable", None),
        ("POST", f"/v1/endpoints/{other}/test", None),
        ("GET", f"/v1/events/{event}", None),
        ("GET", f"/v1/deliveries/{delivery}", None),
        ("POST", f"/v1/deliveries/{delivery}/retry", None),
        ("POST", f"/v1/deliveries/{delivery}/resend", None),
        ("POST", "/v1/dead-letters/replay", {"ids": [delivery]}),
        ("GET", "/v1/status?tenant=acme", None),
        ("GET", "/v1/endpoints?tenant=acme", None),
        ("POST", "/v1/endpoints", {"url": receiver.url("/x"), "tenant": "acme"}),
        ("POST", "/v1/events", {"event_type": "a.b", "data": {}, "tenant": "acme"}),
    ]:
        answer = globex.call(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.headers["content-type"] == PROBLEM

    for path in ["/v1/endpoints", "/v1/events", "/v1/deliveries", "/v1/dead-letters"]:
        assert globex.ok("GET", path)["items"] == [], path
    assert globex.ok("GET", "/v1/deliveries", params={"endpoint_id": ep})["items"] == []
    assert globex.ok("GET", "/v1/status")["endpoints"] == 0

    # Nothing of acme's changed, and acme (and an admin naming acme) still see it all.
    mine = acme.ok("GET", f"/v1/endpoints/{ep}")
    assert mine["description"] == "" and not mine["enabled"]
    assert acme.ok("GET", f"/v1/endpoints/{other}")["enabled"]
    assert len(acme.ok("GET", "/v1/dead-letters")["items"]) == 1
    assert len(admin.ok("GET", "/v1/endpoints", params={"tenant": "acme"})["items"]) == 2
    assert admin.ok("GET", "/v1/endpoints", params={"tenant": "globex"})["items"] == []
    assert admin.ok("GET", f"/v1/events/{event}")["tenant_id"] == "acme"
    assert admin.call("GET", f"/v1/events/{event}", params={"tenant": "globex"}).status_code == 404
    assert admin.ok("GET", f"/v1/endpoints/{ep}", params={"tenant": "acme"})["id"] == ep


def test_requests_without_a_live_key_are_refused_with_401(
    client: TestClient, acme: Api, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        made, revoked_key = apikeys.create(conn, "old", tenant_id="acme")
        apikeys.revoke(conn, made.id)
    for headers in [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer whk_" + "x" * 43},
        {"authorization": "Bearer not-a-key"},
        {"authorization": f"Bearer {revoked_key}"},
    ]:
        answer = client.post("/v1/endpoints", json={"url": "http://127.0.0.1/"}, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["content-type"] == PROBLEM
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["type"].endswith("/unauthorized")
    assert count(db_url, "endpoints") == 0
    assert acme.call("GET", "/v1/endpoints").status_code == 200


def test_keys_are_stored_only_as_their_sha256(db_url: str) -> None:
    key = make_key(db_url, "acme")
    assert key.startswith("whk_") and len(key) >= 40
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("select * from webhooks.api_keys").fetchall()
    assert len(rows) == 1
    assert key not in repr(rows[0])
    assert hashlib.sha256(key.encode()).hexdigest() in rows[0]


BAD_INPUT: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", "/v1/endpoints", {"content": b'{"url": '}, 400, None),
    ("POST", "/v1/endpoints", {"content": b"\xff\xfe"}, 400, None),
    ("POST", "/v1/endpoints", {"json": {"url": 5}}, 422, "url"),
    (
        "POST",
        "/v1/endpoints",
        {"json": {"url": "http://127.0.0.1/", "rate_limit": "x"}},
        422,
        "rate_limit",
    ),
    (
        "POST",
        "/v1/endpoints",
        {"json": {"url": "http://127.0.0.1/", "rate_limit": -1}},
        422,
        "rate_limit",
    ),
    (
        "POST",
        "/v1/endpoints",
        {"json": {"url": "http://127.0.0.1/", "colour": "red"}},
        422,
        "colour",
    ),
    ("POST", "/v1/endpoints", {"json": {"url": "http://127.0.0.1/" + "a" * 3000}}, 422, "url"),
    (
        "POST",
        "/v1/endpoints",
        {"json": {"url": "http://127.0.0.1/", "description": "d" * 1001}},
        422,
        "description",
    ),
    ("POST", "/v1/endpoints", {"json": {"url": "http://10.1.2.3/hook"}}, 422, "url"),
    ("POST", "/v1/endpoints", {"json": {"url": "http://169.254.169.254/latest"}}, 422, "url"),
    ("POST", "/v1/endpoints", {"json": {"url": "ftp://127.0.0.1/"}}, 422, "url"),
    (
        "POST",
        "/v1/endpoints",
        {"json": {"url": "http://127.0.0.1/", "headers": {"Host": "x"}}},
        422,
        "headers",
    ),
    (
        "POST",
        "/v1/endpoints",
        {"json": {"url": "http://127.0.0.1/", "description": "a\x00b"}},
        422,
        None,
    ),
    ("POST", "/v1/endpoints", {"json": ["http://127.0.0.1/"]}, 422, None),
    ("POST", "/v1/events", {"json": {"event_type": "a.b", "data": "x" * MAX_PAYLOAD}}, 413, None),
    (
        "POST",
        "/v1/events",
        {"content": b'{"event_type": "a.b", "data": "' + b"x" * 20 * MAX_PAYLOAD + b'"}'},
        413,
        None,
    ),
    ("POST", "/v1/events", {"json": {"event_type": "no spaces", "data": {}}}, 422, "event_type"),
    ("POST", "/v1/events", {"json": {"event_type": "a" * 256, "data": {}}}, 422, "event_type"),
    ("POST", "/v1/events", {"json": {"event_type": "a.b"}}, 422, "data"),
    ("POST", "/v1/events", {"json": {"event_type": "a.b", "data": {}, "extra": 1}}, 422, "extra"),
    (
        "POST",
        "/v1/events",
        {"json": {"event_type": "a.b", "data": {}}, "headers": {"idempotency-key": "k" * 300}},
        422,
        "idempotency-key",
    ),
    ("GET", "/v1/deliveries", {"params": {"cursor": "not-a-cursor"}}, 422, "cursor"),
    ("GET", "/v1/deliveries", {"params": {"cursor": "WyJ4Il0"}}, 422, "cursor"),
    ("GET", "/v1/events", {"params": {"cursor": "WzFd"}}, 422, "cursor"),
    ("GET", "/v1/dead-letters", {"params": {"cursor": "WzFd"}}, 422, "cursor"),
    ("GET", "/v1/deliveries", {"params": {"cursor": "9" * 20}}, 422, "cursor"),
    ("GET", "/v1/dead-letters", {"params": {"since": "0.5"}}, 422, "since"),
    ("GET", "/v1/deliveries", {"params": {"since": "2024-05-01T12:00:00"}}, 422, "since"),
    ("POST", "/v1/dead-letters/replay", {"json": {"all": True, "dry_run": 0}}, 422, "dry_run"),
    ("POST", "/v1/dead-letters/replay", {"json": {"all": True, "limit": 2**63}}, 422, "limit"),
    ("POST", "/v1/dead-letters/replay", {"json": {"reason": "lost"}}, 422, "reason"),
    ("GET", "/v1/deliveries", {"params": {"limit": "-1"}}, 422, "limit"),
    ("GET", "/v1/deliveries", {"params": {"limit": "501"}}, 422, "limit"),
    ("GET", "/v1/deliveries", {"params": {"status": "lost"}}, 422, "status"),
    ("GET", "/v1/deliveries", {"params": {"since": "yesterday"}}, 422, "since"),
    ("GET", "/v1/deliveries/abc", {}, 422, "delivery_id"),
    ("GET", "/v1/deliveries/99999999999999999999999", {}, 422, "delivery_id"),
    ("GET", "/v1/endpoints/not-a-uuid", {}, 404, None),
    ("POST", "/v1/dead-letters/replay", {"json": {}}, 422, None),
    ("POST", "/v1/dead-letters/replay", {"json": {"ids": [-1]}}, 422, "ids.0"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), BAD_INPUT)
def test_bad_input_is_a_4xx_problem_and_writes_nothing(
    acme: Api,
    db_url: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    if "content" in kwargs:
        kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
    answer = acme.call(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://webhooks-outbox.dev/problems/")
    assert "Traceback" not in answer.text
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert count(db_url, "endpoints") == 0
    assert count(db_url, "outbox") == 0


def walk(api: Api, path: str, key: str, **params: Any) -> list[Any]:
    seen: list[Any] = []
    cursor = None
    pages = 0
    while True:
        got = api.ok(
            "GET", path, params={**params, "limit": 50, **({"cursor": cursor} if cursor else {})}
        )
        assert len(got["items"]) <= 50
        seen += [item[key] for item in got["items"]]
        pages += 1
        cursor = got["next_cursor"]
        if cursor is None:
            return seen
        assert pages < 10


def test_keyset_pagination_walks_120_rows_without_gaps_or_repeats(
    acme: Api, pipeline: Pipeline, receiver: Receiver, db_url: str
) -> None:
    made = [
        acme.ok(
            "POST",
            "/v1/endpoints",
            json={"url": receiver.url(f"/{n}"), "event_types": ["none.yet"]},
        )["id"]
        for n in range(120)
    ]
    target = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/all")})["id"]
    with pipeline.conn.transaction():
        ids = publish_many(
            pipeline.conn,
            [{"event_type": "a.b", "payload": {"n": n}, "tenant_id": "acme"} for n in range(120)],
        )
    pipeline.start_relay()
    wait_for(lambda: count(db_url, "deliveries") == 120, what="120 deliveries")

    assert walk(acme, "/v1/endpoints", "id") == [*made, target]
    assert walk(acme, "/v1/events", "id") == sorted(ids, reverse=True)
    deliveries = walk(acme, "/v1/deliveries", "id", endpoint_id=target)
    assert len(deliveries) == 120 and len(set(deliveries)) == 120
    assert deliveries == sorted(deliveries, reverse=True)

    acme.ok("POST", f"/v1/endpoints/{target}/disable")
    letters = walk(acme, "/v1/dead-letters", "delivery_id")
    assert sorted(letters) == sorted(deliveries)


def test_the_same_idempotency_key_returns_the_same_event(
    acme: Api, globex: Api, db_url: str
) -> None:
    body = {"event_type": "order.created", "data": {"order": 7}}
    created = acme.call("POST", "/v1/events", json=body, headers={"Idempotency-Key": "order-7"})
    assert created.status_code == 201
    first = created.json()
    repeated = acme.call(
        "POST",
        "/v1/events",
        json={**body, "data": {"order": 8}},
        headers={"Idempotency-Key": "order-7"},
    )
    # 200, not 201: nothing was created, the answer is the first event.
    assert repeated.status_code == 200
    again = repeated.json()
    assert again["id"] == first["id"] and again["payload"] == {"order": 7}
    assert first["idempotency_key"] == "order-7"
    # Keys are per tenant: another tenant's same key is another event.
    theirs = globex.ok("POST", "/v1/events", json=body, headers={"Idempotency-Key": "order-7"})
    assert theirs["id"] != first["id"]
    assert count(db_url, "outbox") == 2


def test_an_app_mounted_with_its_own_auth_callable(settings: Settings, db_url: str) -> None:
    def sync_auth(request: Request) -> Principal | None:
        tenant = request.headers.get("x-tenant")
        return Principal(tenant_id=tenant) if tenant else None

    async def async_auth(request: Request) -> Principal | None:
        return Principal(admin=True) if request.headers.get("x-admin") == "yes" else None

    outer = FastAPI()
    outer.mount("/webhooks", create_app(settings, auth=sync_auth))
    outer.mount("/ops", create_app(settings, auth=async_auth))
    with TestClient(outer) as c:
        made = c.post(
            "/webhooks/v1/endpoints",
            json={"url": "http://127.0.0.1:9/h"},
            headers={"x-tenant": "acme"},
        )
        assert made.status_code == 201 and made.json()["tenant_id"] == "acme"
        assert c.get("/webhooks/v1/endpoints").status_code == 401
        assert c.get("/webhooks/v1/endpoints", headers={"x-tenant": "globex"}).json()["items"] == []
        everyone = c.get("/ops/v1/endpoints", headers={"x-admin": "yes"})
        assert [e["tenant_id"] for e in everyone.json()["items"]] == ["acme"]
        assert c.get("/ops/v1/endpoints").status_code == 401
        assert c.get("/webhooks/healthz").json() == {"status": "ok"}


def test_the_committed_openapi_document_is_the_apps() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert json.loads(committed)["openapi"].startswith("3.1")
    assert committed == render(), "regenerate: python -m worker.api.openapi > docs/openapi.json"


def test_webhooks_api_serves_keys_made_by_the_cli_and_stops_on_sigterm(
    db_url: str, redis_url: str
) -> None:
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    made = run_cli("api-key", "create", "--name", "ci", "--tenant", "acme", "--json", env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert run_cli("api-key", "create", "--name", "x", env=env).returncode == 2
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    full_env.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(base + "/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, what="webhooks api to listen")
        assert httpx.get(base + "/readyz").json()["status"] == "ready"
        auth = {"authorization": f"Bearer {key}"}
        created = httpx.post(
            base + "/v1/endpoints", json={"url": "http://127.0.0.1:9/h"}, headers=auth
        )
        assert created.status_code == 201, created.text
        assert httpx.get(base + "/docs").status_code == 200
        assert httpx.get(base + "/openapi.json").json()["openapi"].startswith("3.1")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "POST /v1/endpoints 201" in stderr
    listed = run_cli("api-key", "list", "--json", env=env)
    assert [k["scope"] for k in json.loads(listed.stdout)] == ["acme"]
    assert json.loads(listed.stdout)[0]["last_used_at"] is not None
    revoked = run_cli("api-key", "revoke", str(json.loads(listed.stdout)[0]["id"]), env=env)
    assert revoked.returncode == 0, revoked.stderr


def test_webhooks_api_refuses_an_unmigrated_schema(empty_db_url: str) -> None:
    result = run_cli("api", "--port", str(free_port()), env={"DATABASE_URL": empty_db_url})
    assert result.returncode == 1
    assert "webhooks migrate" in result.stderr and "Traceback" not in result.stderr


def test_a_replay_through_the_api_records_the_key_that_asked_for_it(
    acme: Api, pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.start_relay()
    ep = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/hook")})["id"]
    acme.ok("POST", "/v1/events", json={"event_type": "a.b", "data": {}})
    wait_for(lambda: acme.ok("GET", "/v1/deliveries")["items"], what="the relay's delivery")
    acme.ok("POST", f"/v1/endpoints/{ep}/disable")  # its pending delivery is now a dead letter
    done = acme.ok(
        "POST", "/v1/dead-letters/replay", json={"endpoint_id": ep, "enable_endpoints": True}
    )
    assert done["replayed"] == 1
    [row] = pipeline.rows("select replays from webhooks.dead_letters")
    # It once recorded the API server's user@host, as if an operator at it had replayed.
    assert row["replays"][0]["by"].startswith("api-key:")


def test_ordered_endpoints_ordering_keys_and_discards_through_the_api(
    acme: Api, globex: Api, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.on("/down", lambda _: (500, {}, b"down"))
    pipeline.start_relay()
    pipeline.start_worker()
    ep = acme.ok("POST", "/v1/endpoints", json={"url": receiver.url("/down"), "ordered": True})
    assert ep["ordered"] is True
    path = f"/v1/endpoints/{ep['id']}"
    assert acme.call("PATCH", path, json={"ordered": None}).status_code == 422
    assert acme.call("PATCH", path, json={"ordered": "yes"}).status_code == 422
    event = acme.ok(
        "POST",
        "/v1/events",
        json={"event_type": "invoice.updated", "data": {}, "ordering_key": "invoice-42"},
    )
    assert event["ordering_key"] == "invoice-42"
    for key in ("", "k" * 256, "a\u0000b"):
        refused = acme.call(
            "POST", "/v1/events", json={"event_type": "a.b", "data": {}, "ordering_key": key}
        )
        assert refused.status_code == 422, key
    [letter] = wait_for(lambda: acme.ok("GET", "/v1/dead-letters")["items"], what="a dead letter")
    assert letter["ordering_key"] == "invoice-42"
    discard = "/v1/dead-letters/discard"
    assert acme.call("POST", discard, json={}).status_code == 422
    other = globex.call("POST", discard, json={"ids": [letter["delivery_id"]]})
    assert other.status_code == 404  # another tenant's dead letter does not exist for it
    dry = acme.ok("POST", discard, json={"all": True, "dry_run": True})
    assert dry == {"discarded": 1, "woken": 0, "dry_run": True}
    done = acme.ok("POST", discard, json={"ids": [letter["delivery_id"]]})
    assert (done["discarded"], done["dry_run"]) == (1, False)
    assert acme.ok("GET", "/v1/dead-letters")["items"] == []
    [shown] = acme.ok("GET", "/v1/dead-letters", params={"history": True})["items"]
    assert shown["discarded_at"] is not None
    assert acme.ok("PATCH", path, json={"ordered": False})["ordered"] is False
