"""`endpoint add` and every URL change refuse destinations the workers would always block."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.helpers import run_cli
from worker.errors import InvalidEndpoint
from worker.ops.endpoints import Endpoints
from worker.store.vault import Vault


def count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*) from webhooks.endpoints").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/",
    ],
)
def test_add_refuses_a_private_address_or_localhost_naming_the_setting(
    db_url: str, url: str
) -> None:
    done = run_cli("endpoint", "add", url, env={"DATABASE_URL": db_url})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: URL host ")
    assert "WEBHOOKS_ALLOWED_NETWORKS" in lines[0]
    assert count(db_url) == 0


def test_add_accepts_loopback_once_it_is_allowed(db_url: str) -> None:
    env = {"DATABASE_URL": db_url, "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/"):
        done = run_cli("endpoint", "add", url, "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert "WEBHOOKS_ALLOWED_NETWORKS" not in done.stderr
    assert count(db_url) == 3


def test_add_warns_of_a_name_that_does_not_resolve_and_adds_it(db_url: str) -> None:
    done = run_cli(
        "endpoint",
        "add",
        "https://hooks.example.invalid/in",
        "--json",
        env={"DATABASE_URL": db_url},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["url"] == "https://hooks.example.invalid/in"
    assert (
        "warning: hooks.example.invalid does not resolve: deliveries fail until it does"
        in done.stderr.splitlines()
    )


def test_a_url_change_through_the_library_passes_the_same_check(
    conn: psycopg.Connection[Any],
) -> None:
    warnings: list[str] = []
    registry = Endpoints(conn, Vault(None), warn=warnings.append)
    ep, _ = registry.add("https://hooks.example.invalid/a")
    with pytest.raises(InvalidEndpoint, match="WEBHOOKS_ALLOWED_NETWORKS"):
        registry._update(ep.id, None, "url = %(url)s", {"url": "http://10.0.0.1/"})
    assert registry.get(ep.id).url == "https://hooks.example.invalid/a"
    assert len(warnings) == 1
