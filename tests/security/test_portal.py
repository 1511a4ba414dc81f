"""The portal's attack surface without a browser: links, sessions, CSRF, permissions, tenant
isolation, headers. A real uvicorn server (the API with /portal), a real Postgres."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from tests.helpers import run_cli
from tests.portal.server import Server, csrf_of, portal_server
from tests.receiver import Receiver, running_receiver
from worker.ops import apikeys

EXPIRED_TEXT = "This link has expired or was already used: ask for a new one."


@pytest.fixture
def server(db_url: str, redis_url: str) -> Iterator[Server]:
    with portal_server(db_url, redis_url) as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def add_endpoint(server: Server, tenant: str, url: str) -> str:
    with server.services.connection() as conn:
        ep, _ = server.services.endpoints(conn).add(url, tenant_id=tenant)
    return ep.id


def endpoint_count(server: Server) -> int:
    with server.services.connection() as conn:
        return len(server.services.endpoints(conn).list())


def test_a_link_opens_a_session_once_and_leaves_no_token_in_the_url(server: Server) -> None:
    link = server.link("acme")
    client = httpx.Client()
    opened = client.get(link)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/portal/"
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/portal" in cookie
    assert "Secure" not in cookie  # plain http here; see the framed and https tests
    home = client.get(server.portal + "/")
    assert home.status_code == 200 and "acme" in home.text

    again = httpx.get(link)
    assert again.status_code == 410 and EXPIRED_TEXT in again.text
    assert "Traceback" not in again.text


@pytest.mark.parametrize("token", ["", "nonsense", "whp_" + "A" * 43, "whs_" + "A" * 43])
def test_a_bad_link_is_refused_with_a_clear_page(server: Server, token: str) -> None:
    answer = httpx.get(server.portal + "/enter", params={"token": token})
    assert answer.status_code == 410 and EXPIRED_TEXT in answer.text


def test_an_expired_link_opens_nothing(server: Server, db_url: str) -> None:
    link = server.link("acme")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update webhooks.portal_links set expires_at = now() - interval '1s'")
    assert httpx.get(link).status_code == 410


def test_an_expired_session_is_sent_back_to_the_link_page(server: Server, db_url: str) -> None:
    client = server.session("acme")
    assert client.get(server.portal + "/endpoints").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update webhooks.portal_sessions set expires_at = now() - interval '1s'")
    answer = client.get(server.portal + "/endpoints")
    assert answer.status_code == 401 and EXPIRED_TEXT in answer.text


def test_no_cookie_or_a_forged_cookie_sees_nothing(server: Server) -> None:
    for cookies in ({}, {"webhooks_portal": "whs_" + "A" * 43}, {"webhooks_portal": "x"}):
        answer = httpx.get(server.portal + "/endpoints", cookies=cookies)
        assert answer.status_code == 401 and EXPIRED_TEXT in answer.text


def test_links_and_sessions_are_stored_hashed(server: Server, db_url: str) -> None:
    link = server.link("acme")
    token = parse_qs(urlsplit(link).query)["token"][0]
    client = httpx.Client()
    client.get(link)
    session_token = client.cookies["webhooks_portal"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        dump = json.dumps(
            [
                conn.execute("select row_to_json(l) from webhooks.portal_links l").fetchall(),
                conn.execute("select row_to_json(s) from webhooks.portal_sessions s").fetchall(),
            ],
            default=str,
        )
    assert token not in dump and session_token not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump
    assert hashlib.sha256(session_token.encode()).hexdigest() in dump


def test_revoking_a_link_ends_its_sessions(server: Server, db_url: str) -> None:
    made = server.services.portal_link("acme")
    client = httpx.Client()
    client.get(made.url)
    assert client.get(server.portal + "/").status_code == 200
    result = run_cli("portal-link", "revoke", str(made.id), "--json", env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sessions_revoked"] == 1
    assert client.get(server.portal + "/").status_code == 401


def test_every_page_and_refusal_carries_the_security_headers(server: Server) -> None:
    client = server.session("acme")
    for answer in (
        client.get(server.portal + "/"),
        client.get(server.portal + "/static/portal.css"),
        client.get(server.portal + "/nowhere"),
        httpx.get(server.portal + "/endpoints"),
        httpx.get(server.portal + "/enter"),
    ):
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
    page = client.get(server.portal + "/").text
    assert "<script>" not in page and " style=" not in page


def test_a_framing_site_gets_its_origin_in_the_csp_and_a_cross_site_cookie(
    db_url: str, redis_url: str
) -> None:
    with portal_server(
        db_url,
        redis_url,
        portal_frame_ancestors=("https://app.example.com",),
        portal_logo_url="https://cdn.example.com/logo.png",
    ) as s:
        opened = httpx.get(s.link("acme"))
    policy = opened.headers["content-security-policy"]
    assert "frame-ancestors https://app.example.com" in policy
    assert "img-src 'self' https://cdn.example.com" in policy
    cookie = opened.headers["set-cookie"]
    assert "SameSite=none" in cookie and "Secure" in cookie and "HttpOnly" in cookie


def test_a_form_without_its_csrf_token_changes_nothing(server: Server, receiver: Receiver) -> None:
    client = server.session("acme")
    fields = {"url": receiver.url("/x"), "description": "forged"}
    for forged in ({}, {"csrf": "0" * 64}, {"csrf": ""}):
        answer = client.post(server.portal + "/endpoints", data={**fields, **forged})
        assert answer.status_code == 403 and "Request refused" in answer.text
    assert endpoint_count(server) == 0
    # Another session's token is no good either.
    other = server.session("acme")
    token = csrf_of(other.get(server.portal + "/endpoints/new").text)
    stolen = client.post(server.portal + "/endpoints", data={**fields, "csrf": token})
    assert stolen.status_code == 403
    assert endpoint_count(server) == 0


def test_a_post_from_another_origin_is_refused_even_with_the_token(
    server: Server, receiver: Receiver
) -> None:
    client = server.session("acme")
    token = csrf_of(client.get(server.portal + "/endpoints/new").text)
    data = {"csrf": token, "url": receiver.url("/x")}
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "https://evil.example", "sec-fetch-site": "same-origin"},
        {"origin": "null", "sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ):
        answer = client.post(server.portal + "/endpoints", data=data, headers=headers)
        assert answer.status_code == 403, headers
    assert endpoint_count(server) == 0
    same = client.post(server.portal + "/endpoints", data=data, headers={"origin": server.base})
    assert same.status_code == 200 and endpoint_count(server) == 1


def test_a_read_only_session_cannot_change_anything(
    server: Server, receiver: Receiver, db_url: str
) -> None:
    endpoint = add_endpoint(server, "acme", receiver.url("/a"))
    client = server.session("acme", read_only=True)
    page = client.get(server.portal + f"/endpoints/{endpoint}")
    assert page.status_code == 200 and "Rotate secret" not in page.text
    token = csrf_of(page.text)
    with psycopg.connect(db_url, autocommit=True) as conn:
        before = conn.execute("select * from webhooks.endpoints").fetchall()
    for path, extra in (
        ("/endpoints", {"url": receiver.url("/b")}),
        (f"/endpoints/{endpoint}/edit", {"url": receiver.url("/c")}),
        (f"/endpoints/{endpoint}/disable", {}),
        (f"/endpoints/{endpoint}/enable", {}),
        (f"/endpoints/{endpoint}/delete", {}),
        (f"/endpoints/{endpoint}/rotate", {"grace": "0"}),
        (f"/endpoints/{endpoint}/reveal", {}),
        (f"/endpoints/{endpoint}/test", {}),
        ("/dead-letters/replay", {"scope": "all", "confirm": "yes"}),
        ("/deliveries/1/retry", {}),
        ("/deliveries/1/resend", {}),
    ):
        answer = client.post(server.portal + path, data={"csrf": token, **extra})
        assert answer.status_code == 403, path
        assert "change nothing" in answer.text, path
    for path in ("/endpoints/new", f"/endpoints/{endpoint}/edit", f"/endpoints/{endpoint}/delete"):
        assert client.get(server.portal + path).status_code == 403, path
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select * from webhooks.endpoints").fetchall() == before
        assert conn.execute("select count(*) from webhooks.outbox").fetchone() == (0,)
    assert receiver.to("/a") == []


def test_a_session_without_secrets_cannot_reveal_or_rotate(
    server: Server, receiver: Receiver
) -> None:
    endpoint = add_endpoint(server, "acme", receiver.url("/a"))
    client = server.session("acme", reveal_secrets=False)
    page = client.get(server.portal + f"/endpoints/{endpoint}").text
    assert "Reveal secret" not in page
    for action in ("reveal", "rotate"):
        answer = client.post(
            server.portal + f"/endpoints/{endpoint}/{action}",
            data={"csrf": csrf_of(page), "grace": "0"},
        )
        assert answer.status_code == 403 and "whsec_" not in answer.text
    with server.services.connection() as conn:
        assert server.services.endpoints(conn).get(endpoint).secrets == 1
    created = client.post(
        server.portal + "/endpoints", data={"csrf": csrf_of(page), "url": receiver.url("/b")}
    )
    assert created.status_code == 200 and "Endpoint created" in created.text
    assert "whsec_" not in created.text


def test_another_tenants_ids_answer_404(server: Server, receiver: Receiver) -> None:
    theirs = add_endpoint(server, "globex", receiver.url("/theirs"))
    # In a thread of its own: the browser tests leave an event loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(server.services.send_test_event, theirs).result()
    client = server.session("acme")
    token = csrf_of(client.get(server.portal + "/").text)
    for path in (
        f"/endpoints/{theirs}",
        f"/endpoints/{theirs}/edit",
        f"/endpoints/{theirs}/delete",
        f"/deliveries/{attempt.delivery_id}",
        f"/events/{attempt.event_id}",
        f"/endpoints/{uuid.uuid4()}",
        "/endpoints/not-an-id",
        "/deliveries/not-a-number",
        "/events/not-an-id",
    ):
        answer = client.get(server.portal + path)
        assert answer.status_code == 404, path
        assert "globex" not in answer.text and "/theirs" not in answer.text
    for path in (
        f"/endpoints/{theirs}/disable",
        f"/endpoints/{theirs}/delete",
        f"/endpoints/{theirs}/reveal",
        f"/endpoints/{theirs}/test",
        f"/deliveries/{attempt.delivery_id}/resend",
    ):
        answer = client.post(server.portal + path, data={"csrf": token})
        assert answer.status_code == 404, path
    assert len(receiver.to("/theirs")) == 1  # only the test sent above
    with server.services.connection() as conn:
        assert server.services.endpoints(conn).get(theirs).enabled


def test_the_tenant_cookie_does_not_widen_a_tenant_session(
    server: Server, receiver: Receiver
) -> None:
    theirs = add_endpoint(server, "globex", receiver.url("/theirs"))
    client = server.session("acme")
    client.cookies.set("webhooks_portal_tenant", "globex", path="/portal")
    assert client.get(server.portal + f"/endpoints/{theirs}").status_code == 404
    assert "/theirs" not in client.get(server.portal + "/endpoints").text


def test_an_admin_session_switches_tenants(server: Server, receiver: Receiver) -> None:
    add_endpoint(server, "acme", receiver.url("/mine"))
    theirs = add_endpoint(server, "globex", receiver.url("/theirs"))
    client = server.session(None)
    home = client.get(server.portal + "/")
    assert 'name="tenant"' in home.text and "globex" in home.text
    switched = client.post(
        server.portal + "/tenant",
        data={"csrf": csrf_of(home.text), "tenant": "globex"},
        follow_redirects=True,
    )
    assert switched.status_code == 200 and "/theirs" in switched.text
    assert client.get(server.portal + f"/endpoints/{theirs}").status_code == 200


def test_the_api_makes_links_within_the_keys_tenant(server: Server, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        tenant_key = apikeys.create(conn, "acme", tenant_id="acme")[1]
        admin_key = apikeys.create(conn, "ops", tenant_id=None)[1]
    api = server.base + "/v1/portal-links"

    def post(key: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(api, json=body, headers={"authorization": f"Bearer {key}"})

    own = post(tenant_key, {"read_only": True})
    assert own.status_code == 201, own.text
    assert set(own.json()) == {"id", "url", "expires_at"}
    opened = httpx.Client()
    assert opened.get(own.json()["url"]).status_code == 303
    assert "read-only" in opened.get(server.portal + "/").text
    assert post(tenant_key, {"tenant": "globex"}).status_code == 404
    assert post(tenant_key, {"admin": True}).status_code == 403
    assert post(admin_key, {"tenant": "globex", "ttl_seconds": 60}).status_code == 201
    assert post(admin_key, {"admin": True}).status_code == 201
    assert httpx.post(api, json={}).status_code == 401
    assert post(admin_key, {"ttl_seconds": 10**9}).status_code == 422


def test_the_cli_makes_a_link(server: Server, db_url: str) -> None:
    env = {"DATABASE_URL": db_url, "WEBHOOKS_PORTAL_URL": server.portal}
    made = run_cli("portal-link", "--tenant", "acme", "--ttl", "5m", "--json", env=env)
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)
    assert set(link) == {"id", "url", "expires_at"}
    assert httpx.get(link["url"]).status_code == 303
    both = run_cli("portal-link", "--tenant", "acme", "--admin", env=env)
    assert both.returncode == 2 and "exactly one" in both.stderr
    bad = run_cli("portal-link", "--admin", "--ttl", "soon", env=env)
    assert bad.returncode == 2 and "--ttl" in bad.stderr


def test_page_text_is_escaped(server: Server, receiver: Receiver) -> None:
    client = server.session("acme")
    token = csrf_of(client.get(server.portal + "/endpoints/new").text)
    created = client.post(
        server.portal + "/endpoints",
        data={"csrf": token, "url": receiver.url("/x"), "description": "<img src=x onerror=1>"},
    )
    assert created.status_code == 200
    assert "<img src=x" not in created.text and "&lt;img src=x" in created.text
    assert re.search(r"whsec_[A-Za-z0-9+/=]+", created.text)


def test_links_ended_a_month_ago_are_forgotten_when_a_link_is_made(
    server: Server, db_url: str
) -> None:
    old = server.services.portal_link("acme")
    httpx.get(old.url)
    live = server.services.portal_link("acme")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update webhooks.portal_links set expires_at = now() - interval '31 days'"
            " where id = %s",
            (old.id,),
        )
        conn.execute("update webhooks.portal_sessions set expires_at = now() - interval '31 days'")
    server.services.portal_link("acme")
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = {r[0] for r in conn.execute("select id from webhooks.portal_links").fetchall()}
        sessions = conn.execute("select count(*) from webhooks.portal_sessions").fetchone()
    assert old.id not in ids and live.id in ids and len(ids) == 2
    assert sessions == (0,)
