"""WEBHOOKS_SECRET_KEY cannot silently stop deliveries: wrong keys are refused, failures shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.daemons import Daemon, base_env, eventually, free_port, get, wait_serving
from tests.helpers import run_cli

KEY_A = "a" * 16 + "-first-key-of-the-tests-0123456789"
KEY_B = "b" * 16 + "-second-key-of-the-tests-012345678"
LOOPBACK = "127.0.0.0/8,::1/128"
URL = "http://127.0.0.1:9/hook"


def cli(db_url: str, *args: str, key: str | None = None, **env: str) -> Any:
    settings = {"DATABASE_URL": db_url, "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK, **env}
    if key is not None:
        settings["WEBHOOKS_SECRET_KEY"] = key
    return run_cli(*args, env=settings)


def add(db_url: str, key: str | None) -> str:
    done = cli(db_url, "endpoint", "add", URL, "--json", key=key)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def stored_secrets(db_url: str) -> list[Any]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute("select secrets from webhooks.endpoints order by id")]


def assert_refused(done: Any, text: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: WEBHOOKS_SECRET_KEY: ")
    assert text in done.stderr
    assert done.stdout == ""


def test_rotating_a_secret_with_a_wrong_key_is_refused_and_writes_nothing(db_url: str) -> None:
    endpoint_id = add(db_url, KEY_A)
    before = stored_secrets(db_url)
    done = cli(db_url, "endpoint", "rotate-secret", endpoint_id, key=KEY_B)
    assert_refused(done, "does not decrypt the endpoint secrets already stored")
    assert stored_secrets(db_url) == before


def test_adding_an_endpoint_with_a_wrong_key_is_refused(db_url: str) -> None:
    add(db_url, KEY_A)
    assert_refused(cli(db_url, "endpoint", "add", URL, key=KEY_B), "nothing was written")
    assert len(stored_secrets(db_url)) == 1


def test_no_key_while_secrets_are_encrypted_is_refused_rather_than_storing_one_plain(
    db_url: str,
) -> None:
    endpoint_id = add(db_url, KEY_A)
    assert_refused(cli(db_url, "endpoint", "add", URL), "not set, but stored endpoint secrets")
    assert_refused(cli(db_url, "endpoint", "rotate-secret", endpoint_id), "not set, but stored")
    assert len(stored_secrets(db_url)) == 1


@pytest.mark.parametrize("key", [KEY_B, None], ids=["wrong key", "no key"])
def test_an_endpoint_test_without_the_right_key_is_refused_and_records_nothing(
    db_url: str, key: str | None
) -> None:
    endpoint_id = add(db_url, KEY_A)
    done = cli(db_url, "endpoint", "test", endpoint_id, key=key)
    assert_refused(done, "nothing was written")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from webhooks.outbox").fetchone() == (0,)
        assert conn.execute("select count(*) from webhooks.deliveries").fetchone() == (0,)


def test_a_key_too_short_to_be_a_real_key_is_refused(db_url: str) -> None:
    done = cli(db_url, "endpoint", "list", key="hunter2")
    assert_refused(done, "too short: the key has 7 characters, at least 32 are needed")
    assert "secrets.token_urlsafe(32)" in done.stderr


def test_the_right_key_and_a_key_list_starting_with_a_new_key_write(db_url: str) -> None:
    endpoint_id = add(db_url, KEY_A)
    assert cli(db_url, "endpoint", "rotate-secret", endpoint_id, key=KEY_A).returncode == 0
    # A new key first, the old one after it: the new secret is sealed with the new key.
    done = cli(db_url, "endpoint", "rotate-secret", endpoint_id, key=f"{KEY_B},{KEY_A}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_reencrypt_seals_every_secret_with_the_first_key_so_the_old_one_can_go(
    db_url: str,
) -> None:
    first = add(db_url, KEY_A)
    add(db_url, KEY_A)
    done = cli(db_url, "endpoint", "reencrypt", key=f"{KEY_B},{KEY_A}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "re-encrypted the secrets and header values of 2 endpoints with the first key"
    )
    # The old key is no longer needed, and no longer enough.
    assert cli(db_url, "endpoint", "rotate-secret", first, key=KEY_B).returncode == 0
    assert cli(db_url, "endpoint", "rotate-secret", first, key=KEY_A).returncode == 2


def test_reencrypt_without_a_key_that_opens_everything_is_refused(db_url: str) -> None:
    add(db_url, KEY_A)
    before = stored_secrets(db_url)
    assert_refused(cli(db_url, "endpoint", "reencrypt", key=KEY_B), "nothing was written")
    assert stored_secrets(db_url) == before


def test_a_worker_that_cannot_open_a_secret_records_a_failed_attempt_and_is_not_ready(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    endpoint_id = add(db_url, KEY_A)
    port = free_port()
    env = base_env(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        WEBHOOKS_SECRET_KEY=KEY_B,
        WEBHOOKS_ALLOWED_NETWORKS=LOOPBACK,
        WEBHOOKS_RETRY_SCHEDULE="0s,1h",
        WEBHOOKS_METRICS_PORT=str(port),
        WEBHOOKS_RELAY_METRICS_PORT=str(free_port()),
    )
    relay = Daemon(["relay"], env, tmp_path / "relay.log")
    worker = Daemon(["worker", "--processes", "1", "--threads", "2"], env, tmp_path / "w.log")
    try:
        wait_serving(worker, port)
        assert cli(db_url, "publish", "invoice.paid", "--data", "{}").returncode == 0

        def attempted() -> dict[str, Any]:
            done = cli(db_url, "deliveries", "list", "--endpoint", endpoint_id, "--json")
            rows = json.loads(done.stdout)
            assert rows and rows[0]["attempts"] == 1, rows
            return dict(rows[0])

        delivery = eventually(attempted, timeout=30)
        shown = cli(db_url, "deliveries", "show", str(delivery["id"]), "--json")
        row = json.loads(shown.stdout)
        assert row["status"] == "pending" and row["next_attempt_at"] is not None
        (attempt,) = row["attempts"]
        assert attempt["error_kind"] == "secret"
        assert "WEBHOOKS_SECRET_KEY" in attempt["error"]
        text = cli(db_url, "deliveries", "show", str(delivery["id"])).stdout
        assert "WEBHOOKS_SECRET_KEY" in text

        def not_ready() -> None:
            code, reason = get(port, "/readyz")
            assert code == 503 and "WEBHOOKS_SECRET_KEY" in reason, reason

        eventually(not_ready, timeout=10)
        assert "Traceback" not in worker.output()
    finally:
        worker.stop()
        relay.stop()


@pytest.mark.parametrize("value", ["", ","])
def test_an_empty_key_list_means_no_key(db_url: str, value: str) -> None:
    done = cli(db_url, "endpoint", "add", URL, key=value)
    assert done.returncode == 0, done.stderr
    assert "stored unencrypted" in done.stderr
