"""Every connection names its role in pg_stat_activity, unless the DSN names it already."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.pipeline import Relay, RelayConfig
from worker.engine import actors
from worker.settings import Settings
from worker.store import db

NAME = "select current_setting('application_name') as name"


def test_each_role_names_its_connections(db_url: str, redis_url: str) -> None:
    with db.connect(db_url) as conn:
        assert conn.execute(NAME).fetchone() == {"name": "webhooks"}

    relay = Relay(RelayConfig(database_url=db_url, redis_url=redis_url))
    try:
        assert relay._db().execute(NAME).fetchone() == {"name": "webhooks-relay"}
        row: Any = relay._listen().execute(NAME).fetchone()
        assert row[0] == "webhooks-relay"
    finally:
        relay.close()

    settings = Settings(database_url=db_url, redis_url=redis_url)
    engine = actors.build_engine(settings, concurrency=2)

    async def name() -> Any:
        await engine.pool.open()
        try:
            async with engine.pool.connection() as conn:
                return await (await conn.execute(NAME)).fetchone()
        finally:
            await engine.pool.close()

    assert asyncio.run(name()) == {"name": "webhooks-worker"}


def test_a_name_in_the_dsn_wins(db_url: str) -> None:
    sep = "&" if "?" in db_url else "?"
    with db.connect(f"{db_url}{sep}application_name=billing-webhooks") as conn:
        assert conn.execute(NAME).fetchone() == {"name": "billing-webhooks"}
