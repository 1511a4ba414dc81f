"""producers.django in a real Django project (tests/django_site) on each backend.

Guarantee 1 through Django: an event published inside ``atomic()`` exists if and only if
the block commits, savepoints included; outside ``atomic()`` publish refuses. Each backend
runs in processes of its own, since Django chooses its driver once, when it loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.pipeline import Pipeline
from tests.receiver import Receiver
from worker.store import migrate

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "tests" / "django_site" / "manage.py"

#: Each backend the publisher must work on, as the test site's environment chooses it.
BACKENDS = {
    "psycopg": {},
    "psycopg-server-binding": {"WEBHOOKS_TEST_DJANGO_BINDING": "server"},
    "psycopg2": {"WEBHOOKS_TEST_DJANGO_DRIVER": "psycopg2"},
}


def manage(db_url: str, backend: str, *args: str, debug: bool = False) -> str:
    """Run the test site's manage.py on ``db_url``; return its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOKS_", "DJANGO_"))}
    env.update(BACKENDS[backend], WEBHOOKS_TEST_DJANGO_DB=db_url)
    if debug:
        env["WEBHOOKS_TEST_DJANGO_DEBUG"] = "1"
    done = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def scenarios(db_url: str, backend: str, *names: str, debug: bool = False) -> dict[str, Any]:
    """Run the site's scenarios in one process; return each one's result."""
    out = manage(db_url, backend, "scenario", *names, debug=debug)
    results: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return results


def outbox(db_url: str, prefix: str) -> dict[str, str]:
    """Return event id -> type of the committed events whose type starts with ``prefix``."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select id::text, event_type from webhooks.outbox where event_type like %s",
            (f"{prefix}%",),
        ).fetchall()
    return dict(rows)


@dataclass(frozen=True)
class Site:
    db_url: str
    backend: str
    results: dict[str, Any]


@pytest.fixture(scope="module", params=list(BACKENDS))
def site(request: pytest.FixtureRequest, admin_url: str, template_db: str) -> Iterator[Site]:
    """Run every scenario that needs no delivery on one backend, in one database."""
    backend: str = request.param
    name = f"webhooks_dj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template_db}"')
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    try:
        manage(url, backend, "migrate", "--verbosity", "0")
        names = ["backend", "autocommit", "failed-transaction", "batch", "using-other"]
        results = scenarios(url, backend, *names, "nested", "catalogue")
        results.update(scenarios(url, backend, "logged", debug=True))
        yield Site(url, backend, results)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_the_site_runs_on_the_backend_it_asked_for(site: Site) -> None:
    got = site.results["backend"]
    assert got["driver"] == ("psycopg2" if site.backend == "psycopg2" else "psycopg")
    assert got["server_side_binding"] == (site.backend == "psycopg-server-binding")


def test_savepoints_rolled_back_take_their_events_and_released_ones_commit(site: Site) -> None:
    kept = site.results["nested"]["events"]
    assert sorted(outbox(site.db_url, "nested.")) == sorted(kept)
    assert sorted(outbox(site.db_url, "nested.").values()) == [
        "nested.batch",
        "nested.batch",
        "nested.inner",
        "nested.outer",
    ]


def test_outside_atomic_publish_is_refused_unless_allowed(site: Site) -> None:
    result = site.results["autocommit"]
    assert result["refused"] == ["NotInTransaction", "NotInTransaction"]
    assert outbox(site.db_url, "auto.") == {result["events"][0]: "auto.allowed"}


def test_a_failed_transaction_is_refused(site: Site) -> None:
    # Postgres aborted it (an error swallowed without a savepoint), or Django marked the
    # block for rollback (an inner atomic(savepoint=False) that raised).
    assert site.results["failed-transaction"]["refused"] == [
        "NotInTransaction",
        "NotInTransaction",
    ]
    assert outbox(site.db_url, "failed.") == {}


def test_a_batch_keeps_order_payloads_and_idempotency_keys(site: Site) -> None:
    result = site.results["batch"]
    ids = result["ids"]
    assert ids[0] == ids[3] == result["again"]  # the same key in the batch, then again
    assert len(set(ids)) == 3
    with psycopg.connect(site.db_url) as conn:
        rows = conn.execute(
            "select id::text, tenant_id, payload, idempotency_key, ordering_key"
            " from webhooks.outbox where event_type = 'batch.item'"
        ).fetchall()
    assert sorted(rows) == sorted(
        [
            (ids[0], "acme", {"n": 1, "text": 'it\'s "quoted" \\ é'}, "k-1", None),
            (ids[1], "default", [1, 2, 3], None, None),
            (ids[2], "default", None, None, "o-1"),
        ]
    )
    with psycopg.connect(site.db_url) as conn:
        nulls = conn.execute(
            "select jsonb_typeof(payload), trace_context is null from webhooks.outbox"
            " where id = %s",
            (ids[2],),
        ).fetchone()
    assert nulls == ("null", True)  # a JSON null payload; no trace context (SQL null)


def test_using_publishes_through_that_alias_and_its_own_transaction(site: Site) -> None:
    result = site.results["using-other"]
    assert result["refused"] == ["NotInTransaction"]  # atomic() on default does not cover it
    assert outbox(site.db_url, "other.") == {result["events"][0]: "other.published"}


def test_catalogue_checks_read_the_catalogue_through_django(site: Site) -> None:
    assert site.results["catalogue"]["refused"] == ["UnknownEventType"]


def test_publish_runs_on_djangos_own_cursor(site: Site) -> None:
    # Django's query log (DEBUG) shows it, as execute_wrapper hooks would see it.
    assert site.results["logged"]["logged"] is True


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_what_commits_is_delivered_and_what_rolls_back_never_exists(
    backend: str, pipeline: Pipeline, receiver: Receiver
) -> None:
    db_url = pipeline.settings.require_database_url()
    manage(db_url, backend, "migrate", "--verbosity", "0")
    pipeline.endpoint(receiver.url("/hooks"), tenant_id="acme")
    pipeline.endpoint(receiver.url("/all"))
    pipeline.start_relay()
    pipeline.start_worker()

    results = scenarios(db_url, backend, "view-commits", "view-fails", "nested")

    assert results["view-commits"]["status"] == 200
    assert results["view-commits"]["order"] == "paid"
    assert results["view-fails"]["status"] == 500
    assert results["view-fails"]["order"] == "open"  # the order rolled back with the event
    paid = results["view-commits"]["events"]
    kept = results["nested"]["events"]
    got = receiver.wait_for("/hooks", len(paid)) + receiver.wait_for("/all", len(kept))
    pipeline.settle()
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(paid + kept)
    assert json.loads(got[0].body)["data"]["order"] > 0
    assert pipeline.value("select count(*) from webhooks.outbox") == len(paid) + len(kept)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_webhooks_migrate_applies_the_schema_then_has_nothing_to_do(
    backend: str, empty_db_url: str
) -> None:
    first = manage(empty_db_url, backend, "webhooks_migrate")
    version = migrate.expected_version()
    assert first.splitlines()[0] == "applied 0001_initial"
    assert first.splitlines()[-1] == f"schema at version {version}"
    again = manage(empty_db_url, backend, "webhooks_migrate")
    assert again.strip() == f"nothing to do: schema at version {version}"
    listed = manage(empty_db_url, backend, "webhooks_migrate", "--status").splitlines()
    assert len(listed) == version and all(line.endswith("applied") for line in listed)
