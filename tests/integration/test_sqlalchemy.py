"""producers.sqlalchemy on each driver: the event lives in the session's own transaction.

Guarantee 1 through SQLAlchemy: what commits is delivered (real relay and worker), what
rolls back (the transaction or a savepoint) never exists; the event goes through the
session's connection, never a second one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from producers import Event, NotInTransaction, UnknownEventType, UnsupportedConnection
from producers.sqlalchemy import apublish, apublish_many, publish, publish_many
from tests.pipeline import Pipeline
from tests.receiver import Receiver

SYNC = ["psycopg", "psycopg2"]
ASYNC = ["asyncpg", "psycopg_async"]


def sa_url(db_url: str, driver: str) -> str:
    """Return ``db_url`` for SQLAlchemy's ``driver`` (psycopg_async: psycopg, async engine)."""
    return db_url.replace("postgresql://", f"postgresql+{driver.removesuffix('_async')}://", 1)


def make_engine(db_url: str, driver: str, **kwargs: Any) -> Engine:
    return create_engine(sa_url(db_url, driver), **kwargs)


def make_async_engine(db_url: str, driver: str, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(sa_url(db_url, driver), **kwargs)


@pytest.fixture(params=SYNC)
def engine(request: pytest.FixtureRequest, db_url: str) -> Iterator[Engine]:
    made = make_engine(db_url, request.param)
    yield made
    made.dispose()


def outbox(db_url: str) -> dict[str, str]:
    """Return event id -> type of every committed event."""
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("select id::text, event_type from webhooks.outbox").fetchall())


def committed_and_rolled_back(session: Session) -> list[str]:
    """Publish in a transaction that commits, one that rolls back, and a failed savepoint."""
    with session.begin():
        kept = [publish(session, "order.paid", {"order": 1}, tenant_id="acme")]
        savepoint = session.begin_nested()
        publish(session, "order.lost", {"order": 2})
        savepoint.rollback()
        with session.begin_nested():
            kept += publish_many(session, [("order.kept", {"order": 3}), ("order.kept", None)])
    with session.begin():
        publish(session, "order.lost", {"order": 4})
        session.rollback()
    return kept


async def acommitted_and_rolled_back(session: AsyncSession) -> list[str]:
    """`committed_and_rolled_back` on an AsyncSession."""
    async with session.begin():
        kept = [await apublish(session, "order.paid", {"order": 1}, tenant_id="acme")]
        savepoint = await session.begin_nested()
        await apublish(session, "order.lost", {"order": 2})
        await savepoint.rollback()
        async with session.begin_nested():
            kept += await apublish_many(
                session, [("order.kept", {"order": 3}), ("order.kept", None)]
            )
    async with session.begin():
        await apublish(session, "order.lost", {"order": 4})
        await session.rollback()
    return kept


@pytest.mark.parametrize("driver", SYNC + ASYNC)
def test_what_commits_is_delivered_and_what_rolls_back_never_exists(
    driver: str, pipeline: Pipeline, receiver: Receiver
) -> None:
    db_url = pipeline.settings.require_database_url()
    pipeline.endpoint(receiver.url("/acme"), tenant_id="acme")
    pipeline.endpoint(receiver.url("/default"))
    pipeline.start_relay()
    pipeline.start_worker()

    if driver in SYNC:
        engine = make_engine(db_url, driver)
        with Session(engine) as session:
            kept = committed_and_rolled_back(session)
        engine.dispose()
    else:

        async def run() -> list[str]:
            engine = make_async_engine(db_url, driver)
            async with AsyncSession(engine) as session:
                kept = await acommitted_and_rolled_back(session)
            await engine.dispose()
            return kept

        kept = asyncio.run(run())

    got = receiver.wait_for("/acme", 1) + receiver.wait_for("/default", 2)
    pipeline.settle()
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(kept)
    assert sorted(outbox(db_url).values()) == ["order.kept", "order.kept", "order.paid"]


def test_the_event_goes_through_the_sessions_own_connection(engine: Engine, db_url: str) -> None:
    with Session(engine) as session, session.begin():
        event_id = publish(session, "a.b", {})
        mine = session.execute(
            text("select count(*) from webhooks.outbox where id = cast(:id as uuid)"),
            {"id": event_id},
        ).scalar_one()
        assert mine == 1  # this transaction sees its own insert...
        assert outbox(db_url) == {}  # ...which nobody else sees before the commit
        assert engine.pool.checkedout() == 1  # and no second connection was taken
    assert outbox(db_url) == {event_id: "a.b"}


def test_a_connection_publishes_in_the_transaction_it_began(engine: Engine, db_url: str) -> None:
    with engine.connect() as conn:
        publish(conn, "a.rolled_back", {})  # SQLAlchemy 2 began a transaction: commit as you go
        conn.rollback()
        with conn.begin():
            event_id = publish(conn, "a.committed", {})
    assert outbox(db_url) == {event_id: "a.committed"}


@pytest.mark.parametrize("driver", SYNC)
def test_an_autocommit_engine_is_refused(driver: str, db_url: str) -> None:
    engine = make_engine(db_url, driver, isolation_level="AUTOCOMMIT")
    with Session(engine) as session, pytest.raises(NotInTransaction):
        publish(session, "a.b", {})
    with engine.connect() as conn, pytest.raises(NotInTransaction):
        publish_many(conn, [("a.b", {})])
    engine.dispose()
    assert outbox(db_url) == {}


@pytest.mark.parametrize("driver", ASYNC)
def test_an_autocommit_async_engine_is_refused(driver: str, db_url: str) -> None:
    async def run() -> None:
        engine = make_async_engine(db_url, driver, isolation_level="AUTOCOMMIT")
        async with AsyncSession(engine) as session:
            with pytest.raises(NotInTransaction):
                await apublish(session, "a.b", {})
        await engine.dispose()

    asyncio.run(run())
    assert outbox(db_url) == {}


def test_a_failed_transaction_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.begin()
        with pytest.raises(Exception, match="division by zero"):
            session.execute(text("select 1/0"))
        with pytest.raises(NotInTransaction):
            publish(session, "a.b", {})
        session.rollback()
    with engine.connect() as conn:
        with pytest.raises(Exception, match="division by zero"):
            conn.execute(text("select 1/0"))
        with pytest.raises(NotInTransaction):
            publish(conn, "a.b", {})


def batch_events(tenant: str) -> list[Any]:
    return [
        Event("batch.item", {"n": 1, "text": 'it\'s "quoted" \\ é'}, tenant, "k-1"),
        ("batch.item", [1, 2, 3]),
        {"event_type": "batch.item", "payload": None, "ordering_key": "o-1"},
        Event("batch.item", {"n": 1}, tenant, "k-1"),  # the same key: the same event
    ]


def check_batch(db_url: str, ids: list[str], again: str) -> None:
    assert ids[0] == ids[3] == again and len(set(ids)) == 3
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select id::text, tenant_id, payload, idempotency_key, ordering_key"
            " from webhooks.outbox"
        ).fetchall()
    assert sorted(rows) == sorted(
        [
            (ids[0], "acme", {"n": 1, "text": 'it\'s "quoted" \\ é'}, "k-1", None),
            (ids[1], "default", [1, 2, 3], None, None),
            (ids[2], "default", None, None, "o-1"),
        ]
    )
    with psycopg.connect(db_url) as conn:
        nulls = conn.execute(
            "select jsonb_typeof(payload), trace_context is null from webhooks.outbox"
            " where id = %s",
            (ids[2],),
        ).fetchone()
    assert nulls == ("null", True)  # a JSON null payload; no trace context (SQL null)


def test_a_batch_keeps_payloads_keys_and_idempotency(engine: Engine, db_url: str) -> None:
    with Session(engine) as session, session.begin():
        ids = publish_many(session, batch_events("acme"))
    with Session(engine) as session, session.begin():
        again = publish(session, "batch.item", {"n": 1}, tenant_id="acme", idempotency_key="k-1")
    check_batch(db_url, ids, again)


@pytest.mark.parametrize("driver", ASYNC)
def test_an_async_batch_keeps_payloads_keys_and_idempotency(driver: str, db_url: str) -> None:
    async def run() -> tuple[list[str], str]:
        engine = make_async_engine(db_url, driver)
        async with AsyncSession(engine) as session, session.begin():
            ids = await apublish_many(session, batch_events("acme"))
        async with engine.connect() as conn:
            again = await apublish(
                conn, "batch.item", {"n": 1}, tenant_id="acme", idempotency_key="k-1"
            )
            await conn.commit()
        await engine.dispose()
        return ids, again

    check_batch(db_url, *asyncio.run(run()))


@pytest.mark.parametrize("driver", SYNC + ASYNC)
def test_catalogue_checks_read_the_catalogue_through_the_session(driver: str, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into webhooks.event_types (name, description) values ('a.known', '')")

    async def run_async() -> None:
        engine = make_async_engine(db_url, driver)
        async with AsyncSession(engine) as session, session.begin():
            await apublish(session, "a.known", {}, event_types="known")
            with pytest.raises(UnknownEventType):
                await apublish(session, "a.unknown", {}, event_types="known")
        await engine.dispose()

    if driver in ASYNC:
        asyncio.run(run_async())
        return
    engine = make_engine(db_url, driver)
    with Session(engine) as session, session.begin():
        publish(session, "a.known", {}, event_types="known")
        with pytest.raises(UnknownEventType):
            publish_many(session, [("a.known", {}), ("a.unknown", {})], event_types="known")
    engine.dispose()


def test_what_is_not_a_postgres_session_is_refused(db_url: str) -> None:
    sqlite = create_engine("sqlite://")
    with Session(sqlite) as session, pytest.raises(UnsupportedConnection):
        publish(session, "a.b", {})
    for bogus in (None, object(), "postgresql://x"):
        with pytest.raises(UnsupportedConnection):
            publish(bogus, "a.b", {})  # type: ignore[arg-type]

    async def run() -> None:
        engine = make_async_engine(db_url, "asyncpg")
        async with AsyncSession(engine) as session:
            with pytest.raises(UnsupportedConnection, match="await apublish"):
                publish(session, "a.b", {})  # type: ignore[arg-type]
            with pytest.raises(UnsupportedConnection):
                await apublish(Session(), "a.b", {})  # type: ignore[arg-type]
        await engine.dispose()

    asyncio.run(run())
