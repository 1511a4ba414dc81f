"""Endpoint custom headers carry the receiver's credentials: sealed at rest, shown redacted.

With WEBHOOKS_SECRET_KEY set, a header value is stored like a signing secret (`enc:v1:...`),
is read back by every list, show and GET only as its first characters and a marker, appears
in full only in the answer of the request that set it, and reaches the receiver in full.
Values stored plain before (no key then) keep working and are sealed by `endpoint reencrypt`;
a wrong key is refused before anything is written, as for secrets.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from psycopg.rows import dict_row

from tests.daemons import free_port
from tests.helpers import run_cli
from tests.pipeline import LOOPBACK, Pipeline
from tests.receiver import Receiver, fail_first, running_receiver
from worker.api import create_app
from worker.ops import apikeys
from worker.ops.endpoints import Endpoints
from worker.settings import Settings
from worker.store.vault import PREFIX, Vault

KEY_A = "a" * 16 + "-first-key-of-the-tests-0123456789"
KEY_B = "b" * 16 + "-second-key-of-the-tests-012345678"
TOKEN = "tok_7Hq2Zr9Lw4Xc8Vb1Nm6Pk3Jd5"
BEARER = f"Bearer {TOKEN}"
SHOWN = "Bear…(redacted)"
URL = "http://127.0.0.1:9/hook"


def cli(db_url: str, *args: str, key: str | None = None) -> Any:
    env = {"DATABASE_URL": db_url, "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}
    if key is not None:
        env["WEBHOOKS_SECRET_KEY"] = key
    return run_cli(*args, env=env)


def cli_json(db_url: str, *args: str, key: str | None = None) -> Any:
    done = cli(db_url, *args, "--json", key=key)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stored(db_url: str) -> list[dict[str, Any]]:
    """Return every endpoint's stored headers and secrets, as the database holds them."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        return conn.execute(
            "select headers, headers::text as text, secrets from webhooks.endpoints order by id"
        ).fetchall()


def registry(conn: psycopg.Connection[Any], key: str | None) -> Endpoints:
    return Endpoints(conn, Vault(key), allowed_networks=LOOPBACK)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def api(db_url: str, redis_url: str) -> Iterator[httpx.Client]:
    """Serve `webhooks api` (with KEY_A) on a loopback port; a client holding an admin key."""
    settings = Settings(
        database_url=db_url, redis_url=redis_url, allowed_networks=LOOPBACK, secret_key=KEY_A
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        key = apikeys.create(conn, "admin", tenant_id=None)[1]
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.config.port}",
            headers={"authorization": f"Bearer {key}"},
        ) as client:
            for _ in range(200):
                if server.started:
                    break
                threading.Event().wait(0.05)
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.services.close()


def assert_sealed(row: dict[str, Any], names: set[str]) -> None:
    assert set(row["headers"]) == names  # names stay readable to operators and SQL
    assert all(v.startswith(PREFIX) for v in row["headers"].values()), row["text"]
    assert TOKEN not in row["text"]


def test_header_values_are_stored_sealed_with_the_secret_key(db_url: str) -> None:
    made = cli_json(
        db_url, "endpoint", "add", URL, "--header", f"Authorization: {BEARER}", key=KEY_A
    )
    assert made["headers"] == {"Authorization": BEARER}
    (row,) = stored(db_url)
    assert_sealed(row, {"Authorization"})
    assert Vault(KEY_A).open(row["headers"]["Authorization"]) == BEARER


def test_the_cli_shows_header_values_in_full_only_in_the_answer_that_set_them(
    db_url: str,
) -> None:
    added = cli(db_url, "endpoint", "add", URL, "--header", f"Authorization: {BEARER}", key=KEY_A)
    assert added.returncode == 0, added.stderr
    assert f"Authorization: {BEARER}" in added.stdout and added.stderr == ""
    endpoint_id = next(
        line.split()[-1] for line in added.stdout.splitlines() if line.startswith("id:")
    )

    (listed,) = cli_json(db_url, "endpoint", "list", key=KEY_A)
    assert listed["headers"] == {"Authorization": SHOWN}
    shown = cli_json(db_url, "endpoint", "show", endpoint_id, key=KEY_A)
    assert shown["headers"] == {"Authorization": SHOWN}
    text = cli(db_url, "endpoint", "show", endpoint_id, key=KEY_A).stdout
    assert f"Authorization: {SHOWN}" in text
    # An update of something else is no way to read them...
    renamed = cli_json(db_url, "endpoint", "update", endpoint_id, "--description", "x", key=KEY_A)
    assert renamed["headers"] == {"Authorization": SHOWN}
    # ...an update that sets them answers with what it was given.
    replaced = cli_json(
        db_url, "endpoint", "update", endpoint_id, "--header", f"X-Key: {TOKEN}", key=KEY_A
    )
    assert replaced["headers"] == {"X-Key": TOKEN}
    for out in (
        cli(db_url, "endpoint", "list", key=KEY_A).stdout,
        cli(db_url, "endpoint", "show", endpoint_id, key=KEY_A).stdout,
        cli(db_url, "endpoint", "show", endpoint_id, "--json", key=KEY_A).stdout,
    ):
        assert TOKEN not in out
    (row,) = stored(db_url)
    assert_sealed(row, {"X-Key"})


def test_the_api_shows_header_values_in_full_only_in_the_answer_that_set_them(
    api: httpx.Client, db_url: str
) -> None:
    made = api.post(
        "/v1/endpoints", json={"url": URL, "headers": {"Authorization": BEARER, "X-Team": "blue"}}
    )
    assert made.status_code == 201, made.text
    assert made.json()["headers"] == {"Authorization": BEARER, "X-Team": "blue"}
    endpoint_id = made.json()["id"]
    redacted = {"Authorization": SHOWN, "X-Team": "(redacted)"}

    one = api.get(f"/v1/endpoints/{endpoint_id}")
    assert one.status_code == 200 and one.json()["headers"] == redacted
    (listed,) = api.get("/v1/endpoints").json()["items"]
    assert listed["headers"] == redacted
    renamed = api.patch(f"/v1/endpoints/{endpoint_id}", json={"description": "x"})
    assert renamed.status_code == 200 and renamed.json()["headers"] == redacted
    disabled = api.post(f"/v1/endpoints/{endpoint_id}/disable")
    assert disabled.json()["headers"] == redacted
    assert TOKEN not in one.text + api.get("/v1/endpoints").text + disabled.text

    patched = api.patch(f"/v1/endpoints/{endpoint_id}", json={"headers": {"X-Key": TOKEN}})
    assert patched.status_code == 200 and patched.json()["headers"] == {"X-Key": TOKEN}
    (row,) = stored(db_url)
    assert_sealed(row, {"X-Key"})


def test_deliveries_carry_the_full_header_values_and_no_log_line_holds_them(
    db_url: str, redis_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.on("/sealed", fail_first(1))  # a failed attempt is logged too
    p = Pipeline(db_url, redis_url, secret_key=KEY_A)
    try:
        # One endpoint written before a key was set (plain), one with the key (sealed).
        registry(p.conn, None).add(receiver.url("/plain"), headers={"Authorization": BEARER})
        p.endpoint(receiver.url("/sealed"), headers={"Authorization": BEARER, "X-Team": "blue"})
        old, new = stored(db_url)
        assert old["headers"] == {"Authorization": BEARER}
        assert_sealed(new, {"Authorization", "X-Team"})
        p.start_relay()
        p.start_worker()
        p.publish("invoice.paid", {"n": 1})
        (plain,) = receiver.wait_for("/plain", 1)
        sealed = receiver.wait_for("/sealed", 2)
        p.settle()
    finally:
        p.stop()
    assert plain.headers["authorization"] == BEARER
    for request in sealed:
        assert request.headers["authorization"] == BEARER
        assert request.headers["x-team"] == "blue"
    # Every record the pipeline logged, message and structured fields alike.
    assert any(r.getMessage().startswith("delivery ") for r in caplog.records)
    assert not [r for r in caplog.records if TOKEN in r.getMessage() or TOKEN in repr(vars(r))]


def test_reencrypt_seals_header_values_stored_plain_before_a_key_was_set(db_url: str) -> None:
    added = cli(db_url, "endpoint", "add", URL, "--header", f"Authorization: {BEARER}")
    assert added.returncode == 0, added.stderr
    assert "the secret and the header values are stored unencrypted" in added.stderr
    (row,) = stored(db_url)
    assert row["headers"] == {"Authorization": BEARER}
    # A plain value reads as before once a key is set, redacted like a sealed one.
    (listed,) = cli_json(db_url, "endpoint", "list", key=KEY_A)
    assert listed["headers"] == {"Authorization": SHOWN}

    done = cli(db_url, "endpoint", "reencrypt", key=KEY_A)
    assert done.returncode == 0, done.stderr
    (row,) = stored(db_url)
    assert_sealed(row, {"Authorization"})
    assert row["secrets"][0]["secret"].startswith(PREFIX)
    assert Vault(KEY_A).open(row["headers"]["Authorization"]) == BEARER
    (listed,) = cli_json(db_url, "endpoint", "list", key=KEY_A)
    assert listed["headers"] == {"Authorization": SHOWN}


def only_the_header_sealed(db_url: str, key: str) -> str:
    """Register an endpoint whose secret is plain and whose header is sealed with ``key``."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        ep, _ = registry(conn, None).add(URL)
        registry(conn, key).update(ep.id, headers={"Authorization": BEARER})
    (row,) = stored(db_url)
    assert not row["secrets"][0]["secret"].startswith(PREFIX)
    assert_sealed(row, {"Authorization"})
    return ep.id


def test_a_wrong_or_missing_key_is_refused_before_header_values_are_written(
    db_url: str,
) -> None:
    endpoint_id = only_the_header_sealed(db_url, KEY_A)
    before = stored(db_url)
    for key, message in (
        (KEY_B, "does not decrypt the endpoint secrets already stored"),
        (None, "not set, but stored endpoint secrets are encrypted"),
    ):
        done = cli(db_url, "endpoint", "update", endpoint_id, "--header", "X-A: b", key=key)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stderr.startswith("error: WEBHOOKS_SECRET_KEY: ") and message in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    refused = cli(db_url, "endpoint", "reencrypt", key=KEY_B)
    assert refused.returncode == 2 and "nothing was written" in refused.stderr
    assert stored(db_url) == before
    # Reading needs no key: without the right one, not even the start is shown.
    shown = cli_json(db_url, "endpoint", "show", endpoint_id, key=KEY_B)
    assert shown["headers"] == {"Authorization": "(redacted)"}


def test_a_worker_whose_key_cannot_open_a_header_records_a_failed_attempt_and_sends_nothing(
    db_url: str, redis_url: str, receiver: Receiver
) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        ep, _ = registry(conn, None).add(receiver.url("/hook"))
        registry(conn, KEY_A).update(ep.id, headers={"Authorization": BEARER})
    p = Pipeline(db_url, redis_url, secret_key=KEY_B, retry_schedule=(0, 3600))
    try:
        p.start_relay()
        p.start_worker()
        p.publish("invoice.paid", {})
        p.wait_until(lambda: p.value("select count(*) from webhooks.attempts") == 1)
        attempt = p.rows("select error_kind, error from webhooks.attempts")[0]
    finally:
        p.stop()
    assert attempt["error_kind"] == "secret"
    assert "WEBHOOKS_SECRET_KEY" in attempt["error"]
    assert receiver.to("/hook") == []
