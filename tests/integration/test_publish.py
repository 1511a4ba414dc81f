"""The producer API against a real Postgres (guarantee 1 and idempotency)."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from typing import Any

import psycopg
import pytest

from producers import (
    Event,
    InvalidEvent,
    InvalidPayload,
    NotInTransaction,
    PayloadTooLarge,
    UnsupportedConnection,
    apublish,
    publish,
    publish_many,
)


def outbox_count(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("select count(*) from webhooks.outbox").fetchone()
    assert row is not None
    return int(row[0])


def test_committed_publish_is_one_row(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            event_id = publish(conn, "invoice.paid", {"invoice": 42}, tenant_id="acme")
        row = conn.execute(
            "select tenant_id, event_type, payload from webhooks.outbox where id = %s",
            (event_id,),
        ).fetchone()
    assert row == ("acme", "invoice.paid", {"invoice": 42})
    assert outbox_count(db_url) == 1


def test_rolled_back_publish_leaves_nothing(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            publish(conn, "invoice.paid", {"invoice": 1})
            raise RuntimeError("domain failure")
        # Implicit transaction (not autocommit), rolled back explicitly.
        publish(conn, "invoice.paid", {"invoice": 2})
        conn.rollback()
    assert outbox_count(db_url) == 0


def test_publish_never_commits_on_its_own(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        publish(conn, "a.b", {})
        assert outbox_count(db_url) == 0  # another session sees nothing yet
        conn.commit()
    assert outbox_count(db_url) == 1


def test_publish_accepts_a_cursor(db_url: str) -> None:
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        event_id = publish(cur, "a.b", [1, 2, 3])
        conn.commit()
    assert len(event_id) == 36


def test_autocommit_outside_a_transaction_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(NotInTransaction):
            publish(conn, "a.b", {})
        with conn.transaction():
            publish(conn, "a.b", {})
    assert outbox_count(db_url) == 1


def test_a_failed_transaction_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select 1/0")
        with pytest.raises(NotInTransaction):
            publish(conn, "a.b", {})


def test_unknown_connection_types_are_refused() -> None:
    for bogus in (None, "postgresql://x", object()):
        with pytest.raises(UnsupportedConnection):
            publish(bogus, "a.b", {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event_type", "payload", "error"),
    [
        ("", {}, InvalidEvent),
        ("x" * 256, {}, InvalidEvent),
        ("has space", {}, InvalidEvent),
        (".leading", {}, InvalidEvent),
        (42, {}, InvalidEvent),
        ("a.b", {"when": object()}, InvalidPayload),
        ("a.b", {"nan": float("nan")}, InvalidPayload),
        ("a.b", {"nul": "a\x00b"}, InvalidPayload),
        ("a.b", {"big": "x" * 300_000}, PayloadTooLarge),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    db_url: str, event_type: Any, payload: Any, error: type[Exception]
) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(error):
            publish(conn, event_type, payload)
        with pytest.raises(error):
            publish_many(conn, [Event("ok.event", {}), Event(event_type, payload)])
        conn.commit()
    assert outbox_count(db_url) == 0


def test_bad_tenant_and_key_are_refused(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for kwargs in (
            {"tenant_id": ""},
            {"tenant_id": "a b"},
            {"idempotency_key": ""},
            {"ordering_key": ""},
            {"ordering_key": "k" * 256},
            {"ordering_key": "a\x00b"},
            {"ordering_key": 42},
        ):
            with pytest.raises(InvalidEvent):
                publish(conn, "a.b", {}, **kwargs)  # type: ignore[arg-type]
        conn.commit()
    assert outbox_count(db_url) == 0


def test_ordering_keys_are_stored_with_their_events(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        one = publish(conn, "a.b", {}, ordering_key="invoice-42")
        many = publish_many(
            conn,
            [
                Event("a.b", {}, ordering_key="invoice-43"),
                ("a.b", {}),
                {"event_type": "a.b", "payload": {}, "ordering_key": "invoice-42"},
            ],
        )
        conn.commit()
        rows = dict(conn.execute("select id::text, ordering_key from webhooks.outbox").fetchall())
    assert [rows[i] for i in [one, *many]] == ["invoice-42", "invoice-43", None, "invoice-42"]


def test_payload_limit_is_configurable(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(PayloadTooLarge) as caught:
            publish(conn, "a.b", {"k": "x" * 100}, max_payload_bytes=50)
        assert caught.value.limit == 50


def test_repeated_idempotency_key_returns_the_first_id(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        first = publish(conn, "a.b", {"n": 1}, idempotency_key="k1")
        conn.commit()
        again = publish(conn, "a.b", {"n": 2}, idempotency_key="k1")
        other_tenant = publish(conn, "a.b", {"n": 3}, tenant_id="t2", idempotency_key="k1")
        conn.commit()
    assert again == first
    assert other_tenant != first
    assert outbox_count(db_url) == 2


def test_idempotency_holds_under_concurrent_publishers(db_url: str) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def publisher() -> None:
        with psycopg.connect(db_url) as conn:
            barrier.wait()
            event_id = publish(conn, "order.created", {}, idempotency_key="order-7")
            time.sleep(0.05)  # hold the transaction open so others must wait on it
            conn.commit()
            ids.append(event_id)

    threads = [threading.Thread(target=publisher) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert outbox_count(db_url) == 1


def test_publish_many_returns_ids_in_order_and_dedupes_keys(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        existing = publish(conn, "a.b", {}, idempotency_key="dup")
        conn.commit()
        ids = publish_many(
            conn,
            [
                Event("a.b", {"i": 0}),
                ("a.c", {"i": 1}),
                {"event_type": "a.d", "payload": {"i": 2}, "idempotency_key": "dup"},
                Event("a.e", {"i": 3}, idempotency_key="new"),
                Event("a.f", {"i": 4}, idempotency_key="new"),
            ],
        )
        conn.commit()
        rows = dict(conn.execute("select id::text, payload from webhooks.outbox").fetchall())
    assert ids[2] == existing
    assert ids[3] == ids[4]
    assert len(set(ids)) == 4
    assert rows[ids[0]] == {"i": 0} and rows[ids[1]] == {"i": 1} and rows[ids[3]] == {"i": 3}
    assert outbox_count(db_url) == 4


def test_publish_many_of_nothing_writes_nothing(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert publish_many(conn, []) == []


def test_publish_notifies_the_relay_on_commit(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen webhooks_outbox")
        with psycopg.connect(db_url) as conn:
            publish(conn, "a.b", {})
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == []
            conn.commit()
        got = list(listener.notifies(timeout=2, stop_after=1))
    assert [n.channel for n in got] == ["webhooks_outbox"]


def test_apublish_on_an_async_connection(db_url: str) -> None:
    async def main() -> str:
        conn = await psycopg.AsyncConnection.connect(db_url)
        async with conn:
            async with conn.transaction():
                event_id = await apublish(conn, "a.b", {"async": True}, tenant_id="t")
            with pytest.raises(UnsupportedConnection):
                publish(conn, "a.b", {})  # type: ignore[arg-type]
        return event_id

    event_id = asyncio.run(main())
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "select tenant_id from webhooks.outbox where id = %s", (event_id,)
        ).fetchone()
    assert row == ("t",)


def test_a_connection_with_client_side_binding_publishes_batches(db_url: str) -> None:
    # Django's psycopg 3 connections make ClientCursors, which cannot send binary arrays.
    with psycopg.connect(db_url, cursor_factory=psycopg.ClientCursor) as conn:
        ids = publish_many(conn, [Event("a.b", {"n": i}) for i in range(3)])
        ids.append(publish(conn, "a.b", {"n": 3}))
        conn.commit()
    assert len(set(ids)) == 4
    assert outbox_count(db_url) == 4


@pytest.mark.parametrize("style", ["psycopg", "format"])
def test_a_batch_over_the_statement_budget_is_split_in_one_transaction(
    db_url: str, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    from producers.statements import FORMAT, PSYCOPG

    # The module, not the function `producers.publish` that the package exports.
    module = importlib.import_module("producers.publish")

    monkeypatch.setattr(module, "BATCH_BYTES", 50)  # two 24-byte payloads a statement
    ran: list[str] = []
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            first = publish(conn, "a.b", {}, idempotency_key="seen")
        execute = module.psycopg_execute(conn)

        def counting(sql: str, params: Any) -> Any:
            ran.append(sql)
            return execute(sql, params)

        events = [Event("a.b", {"n": "x" * 10, "i": i}) for i in range(5)]
        events.insert(3, Event("a.b", {}, idempotency_key="seen"))
        call = module.Call.of(events)
        with conn.transaction():
            ids = call.run(PSYCOPG if style == "psycopg" else FORMAT, counting)
    assert len(ran) == 3
    assert ids[3] == first and len(set(ids)) == 6
    assert outbox_count(db_url) == 6
