"""Publish-time checks against the event-type catalogue (issue 27): WEBHOOKS_EVENT_TYPES and
WEBHOOKS_VALIDATE_PAYLOADS, in the library, the CLI and the API. Nothing refused is written.

Catalogue rows are inserted with SQL: the tests need only the tables of migration 0007.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from producers import (
    Event,
    InvalidEvent,
    PayloadMismatch,
    UnknownEventType,
    apublish,
    publish,
    publish_many,
)
from tests.helpers import run_cli
from worker.api import create_app
from worker.ops import apikeys
from worker.settings import Settings

ORDER_V1 = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "integer"}},
}
ORDER_V2 = {
    "type": "object",
    "required": ["id", "items"],
    "properties": {
        "id": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}},
        },
    },
}
GOOD = {"id": 7, "items": [{"qty": 1}]}


def add_type(
    url: str, name: str, *schemas: object, deprecated: bool = False, archived: bool = False
) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into webhooks.event_types (name, deprecated, archived) values (%s, %s, %s)",
            (name, deprecated, archived),
        )
        for version, schema in enumerate(schemas, start=1):
            add_schema(conn, name, version, schema)


def add_schema(conn: psycopg.Connection[Any], name: str, version: int, schema: object) -> None:
    conn.execute(
        "insert into webhooks.event_type_schemas (event_type, version, schema)"
        " values (%s, %s, %s::jsonb)",
        (name, version, json.dumps(schema)),
    )


def outbox_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from webhooks.outbox").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def catalogue(db_url: str) -> str:
    add_type(db_url, "order.paid", ORDER_V1, ORDER_V2)
    add_type(db_url, "order.legacy", deprecated=True)
    add_type(db_url, "order.gone", ORDER_V1, archived=True)
    add_type(db_url, "note.added")  # no schema
    return db_url


# -- WEBHOOKS_EVENT_TYPES -------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "archived"), [("order.nope", False), ("order.gone", True)])
def test_known_refuses_an_unknown_or_archived_type_and_writes_nothing(
    catalogue: str, event_type: str, archived: bool
) -> None:
    with psycopg.connect(catalogue) as conn:
        publish(conn, "order.paid", GOOD, event_types="known")
        with pytest.raises(UnknownEventType) as raised:
            publish_many(conn, [("order.paid", GOOD), (event_type, {"id": 1})], event_types="known")
        assert raised.value.event_type == event_type
        assert raised.value.archived is archived
        assert isinstance(raised.value, InvalidEvent)
        conn.commit()
    assert outbox_count(catalogue) == 1


def test_open_publishes_any_type(catalogue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_EVENT_TYPES", "known")
    with psycopg.connect(catalogue) as conn:
        publish(conn, "order.nope", {}, event_types="open")
        publish(conn, "order.gone", {}, event_types="open")
        monkeypatch.setenv("WEBHOOKS_EVENT_TYPES", "open")
        publish_many(conn, [("order.nope", {}), ("other.thing", [])])
        conn.commit()
    assert outbox_count(catalogue) == 4


def test_the_environment_applies_when_no_argument_is_given(
    catalogue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOKS_EVENT_TYPES", "known")
    monkeypatch.setenv("WEBHOOKS_VALIDATE_PAYLOADS", "reject")
    with psycopg.connect(catalogue) as conn:
        with pytest.raises(UnknownEventType):
            publish(conn, "order.nope", {})
        conn.rollback()
        with pytest.raises(PayloadMismatch):
            publish(conn, "order.paid", {"id": 1})
        conn.rollback()
        monkeypatch.setenv("WEBHOOKS_VALIDATE_PAYLOADS", "strict")
        with pytest.raises(InvalidEvent, match="WEBHOOKS_VALIDATE_PAYLOADS: must be"):
            publish(conn, "order.paid", GOOD)
    with pytest.raises(InvalidEvent, match=r"^validate: must be 'off', 'warn' or 'reject'"):
        publish(conn, "order.paid", GOOD, validate="on")  # type: ignore[arg-type]
    assert outbox_count(catalogue) == 0


def test_a_deprecated_type_publishes_and_says_so_once(
    catalogue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhooks.producers")
    with psycopg.connect(catalogue) as conn:
        for _ in range(3):
            publish(conn, "order.legacy", {}, event_types="known")
        conn.commit()
    assert outbox_count(catalogue) == 3
    said = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(said) <= 1  # once per process: an earlier test may have said it already


# -- WEBHOOKS_VALIDATE_PAYLOADS -------------------------------------------------------------


def test_reject_names_the_path_of_the_first_error_against_the_latest_version(
    catalogue: str,
) -> None:
    with psycopg.connect(catalogue) as conn:
        # Valid under version 1, not under version 2 (the latest): items are required.
        with pytest.raises(PayloadMismatch) as missing:
            publish(conn, "order.paid", {"id": 1}, validate="reject")
        conn.rollback()
        with pytest.raises(PayloadMismatch) as nested:
            publish_many(
                conn,
                [
                    ("order.paid", GOOD),
                    ("order.paid", {"id": 2, "items": [{"qty": 1}, {"qty": 0}]}),
                ],
                validate="reject",
            )
        conn.rollback()
    assert '"items" is a required property' in str(missing.value)
    assert nested.value.path == "data.items[1].qty"
    assert str(nested.value).startswith("data.items[1].qty: 0 is less than the minimum of 1")
    assert "'order.paid', schema version 2" in str(nested.value)
    assert outbox_count(catalogue) == 0


def test_warn_logs_once_per_type_and_call_and_publishes(
    catalogue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhooks.producers")
    bad = {"id": "seven", "items": []}
    with psycopg.connect(catalogue) as conn:
        publish_many(conn, [("order.paid", bad)] * 3 + [("order.paid", GOOD)], validate="warn")
        conn.commit()
    assert outbox_count(catalogue) == 4
    (line,) = [r.getMessage() for r in caplog.records if r.name == "webhooks.producers"]
    assert line.startswith('payload data.id: "seven" is not of type "integer"')
    assert "(3 events of this call)" in line


def test_off_never_reads_the_catalogue_and_a_type_without_schema_passes(catalogue: str) -> None:
    with psycopg.connect(catalogue) as conn:
        publish(conn, "order.paid", {"anything": True}, validate="off")
        publish(conn, "note.added", [1, 2, 3], validate="reject", event_types="known")
        publish(conn, "not.in.catalogue", "text", validate="reject")
        conn.commit()
    assert outbox_count(catalogue) == 3


def test_the_payload_is_checked_as_it_will_be_stored(catalogue: str) -> None:
    with psycopg.connect(catalogue) as conn:
        # A tuple is stored as an array, so it is one for the schema too.
        publish(conn, "order.paid", {"id": 1, "items": ({"qty": 2},)}, validate="reject")
        conn.commit()
    assert outbox_count(catalogue) == 1


def test_apublish_checks_too(catalogue: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(catalogue) as conn:
            with pytest.raises(UnknownEventType):
                await apublish(conn, "order.gone", {}, event_types="known")
            await conn.rollback()
            with pytest.raises(PayloadMismatch, match=r"^data\.items\[0\]\.qty"):
                await apublish(
                    conn, "order.paid", {"id": 1, "items": [{"qty": -1}]}, validate="reject"
                )
            await conn.rollback()
            await apublish(conn, "order.paid", GOOD, event_types="known", validate="reject")
            await conn.commit()

    asyncio.run(run())
    assert outbox_count(catalogue) == 1


def test_a_cursor_with_its_own_row_factory_works(catalogue: str) -> None:
    with psycopg.connect(catalogue, row_factory=psycopg.rows.dict_row) as conn:
        cur = conn.cursor()
        publish(cur, "order.paid", GOOD, event_types="known", validate="reject")
        publish_many(cur, [Event("order.paid", GOOD)], event_types="known", validate="reject")
        conn.commit()
    assert outbox_count(catalogue) == 2


# -- one statement per call, and a cache that follows the catalogue -----------------------


def test_a_batch_reads_the_catalogue_once(catalogue: str) -> None:
    with psycopg.connect(catalogue) as conn:
        conn.execute("select pg_stat_force_next_flush()")
        before = _catalogue_scans(conn)
        events = [("order.paid", GOOD), ("note.added", {})] * 500
        publish_many(conn, events, event_types="known", validate="reject")
        conn.execute("select pg_stat_force_next_flush()")
        after = _catalogue_scans(conn)
        conn.commit()
    assert outbox_count(catalogue) == 1000
    # One statement: one probe of event_types per distinct type, whatever the batch size.
    assert 1 <= after - before <= 2


def _catalogue_scans(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "select coalesce(idx_scan, 0) + coalesce(seq_scan, 0) from pg_stat_xact_user_tables"
        " where schemaname = 'webhooks' and relname = 'event_types'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_schema_version_added_in_another_transaction_applies_to_the_next_call(
    catalogue: str,
) -> None:
    v3 = {**ORDER_V2, "required": ["id", "items", "currency"]}
    with psycopg.connect(catalogue) as conn:
        publish(conn, "order.paid", GOOD, validate="reject")  # compiled and cached: version 2
        conn.commit()
        with psycopg.connect(catalogue) as other:
            add_schema(other, "order.paid", 3, v3)
        with pytest.raises(PayloadMismatch, match='"currency" is a required property'):
            publish(conn, "order.paid", GOOD, validate="reject")
        conn.rollback()
        publish(conn, "order.paid", {**GOOD, "currency": "EUR"}, validate="reject")
        conn.commit()
    assert outbox_count(catalogue) == 2


def test_the_check_sees_the_callers_own_uncommitted_catalogue_rows(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into webhooks.event_types (name) values ('fresh.type')")
        add_schema(conn, "fresh.type", 1, {"type": "object", "required": ["a"]})
        with pytest.raises(PayloadMismatch):
            publish(conn, "fresh.type", {}, event_types="known", validate="reject")
        conn.rollback()
    assert outbox_count(db_url) == 0


# -- the CLI and the API --------------------------------------------------------------------


def test_the_cli_refuses_in_one_line_with_exit_2(catalogue: str) -> None:
    env = {
        "DATABASE_URL": catalogue,
        "WEBHOOKS_EVENT_TYPES": "known",
        "WEBHOOKS_VALIDATE_PAYLOADS": "reject",
    }
    unknown = run_cli("publish", "order.nope", "--data", "{}", env=env)
    assert unknown.returncode == 2, unknown.stderr
    (line,) = unknown.stderr.strip().splitlines()
    assert line == (
        "error: event type 'order.nope' is not in the event-type catalogue"
        " (WEBHOOKS_EVENT_TYPES=known)"
    )
    bad = run_cli("publish", "order.paid", "--data", '{"id": 1, "items": "no"}', env=env)
    assert bad.returncode == 2, bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith('error: data.items: "no" is not of type "array"')
    good = run_cli("publish", "order.paid", "--data", json.dumps(GOOD), env=env)
    assert good.returncode == 0, good.stderr
    malformed = run_cli(
        "publish", "order.paid", "--data", "{}", env={**env, "WEBHOOKS_EVENT_TYPES": "closed"}
    )
    assert malformed.returncode == 2
    (line,) = malformed.stderr.strip().splitlines()
    assert line.startswith("error: WEBHOOKS_EVENT_TYPES: must be 'open' or 'known'")
    assert outbox_count(catalogue) == 1


@pytest.fixture
def api(catalogue: str, redis_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(
        database_url=catalogue,
        redis_url=redis_url,
        event_types="known",
        validate_payloads="reject",
    )
    app = create_app(settings)
    with psycopg.connect(catalogue, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        key = apikeys.create(conn, "acme's", tenant_id="acme")[1]
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, {"authorization": f"Bearer {key}"}
    app.state.services.close()


def test_the_api_answers_422_problems(
    api: tuple[TestClient, dict[str, str]], catalogue: str
) -> None:
    client, auth = api
    unknown = client.post("/v1/events", json={"event_type": "order.gone", "data": {}}, headers=auth)
    assert unknown.status_code == 422, unknown.text
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["errors"] == [
        {"field": "event_type", "message": unknown.json()["detail"]}
    ]
    assert "archived" in unknown.json()["detail"]
    bad = client.post(
        "/v1/events",
        json={"event_type": "order.paid", "data": {"id": 1, "items": [{"qty": 0}]}},
        headers=auth,
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"].startswith("data.items[0].qty: 0 is less than the minimum of 1")
    assert bad.json()["errors"][0]["field"] == "data"
    good = client.post("/v1/events", json={"event_type": "order.paid", "data": GOOD}, headers=auth)
    assert good.status_code == 201, good.text
    assert outbox_count(catalogue) == 1
