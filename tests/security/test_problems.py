"""The API's problem details name API routes, never a `webhooks` command or its options.

A 409 from `POST /v1/deliveries/{id}/retry` told an API client to run `webhooks deliveries
resend 24`: a command it does not have, on a machine it cannot reach.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.pipeline import LOOPBACK, Pipeline
from worker.api import create_app
from worker.ops import apikeys
from worker.settings import Settings

#: A `webhooks` command in backquotes, or a command-line option.
CLI_WORDING = re.compile(r"`webhooks |(?<![\w-])--[a-z]")


@pytest.fixture
def api(db_url: str, redis_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, redis_url=redis_url, allowed_networks=LOOPBACK))
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        key = apikeys.create(conn, "acme's", tenant_id="acme")[1]
    with TestClient(app, headers={"authorization": f"Bearer {key}"}) as client:
        yield client
    app.state.services.close()


@pytest.fixture
def pipeline(db_url: str, redis_url: str) -> Iterator[Pipeline]:
    p = Pipeline(db_url, redis_url)
    yield p
    p.stop()


def conflict(answer: httpx.Response, route: str) -> str:
    assert answer.status_code == 409, answer.text
    detail: str = answer.json()["detail"]
    assert not CLI_WORDING.search(detail), detail
    assert route in detail, detail
    return detail


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return got


def test_conflicts_name_the_api_route_that_helps_not_the_command(
    api: TestClient, pipeline: Pipeline
) -> None:
    pipeline.start_relay()
    endpoint = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}).json()["id"]
    api.post("/v1/events", json={"event_type": "a.b", "data": {}})
    delivery = wait_for(lambda: api.get("/v1/deliveries").json()["items"])[0]["id"]

    still_pending = api.post(f"/v1/deliveries/{delivery}/resend")
    conflict(still_pending, f"POST /v1/deliveries/{delivery}/retry")

    # Disabling the endpoint makes its pending delivery a dead letter.
    assert api.post(f"/v1/endpoints/{endpoint}/disable").status_code == 200
    dead = api.post(f"/v1/deliveries/{delivery}/retry")
    conflict(dead, "POST /v1/dead-letters/replay")
    assert f"POST /v1/deliveries/{delivery}/resend" in dead.json()["detail"]

    enable_first = f"POST /v1/endpoints/{endpoint}/enable"
    conflict(api.post(f"/v1/deliveries/{delivery}/resend"), enable_first)
    conflict(api.post(f"/v1/endpoints/{endpoint}/test"), enable_first)
    refused = api.post("/v1/dead-letters/replay", json={"endpoint_id": endpoint})
    conflict(refused, '"enable_endpoints": true')


def test_a_url_with_credentials_is_refused_naming_the_headers_field(api: TestClient) -> None:
    answer = api.post("/v1/endpoints", json={"url": "http://user:pw@127.0.0.1:9/hook"})
    assert answer.status_code == 422
    assert not CLI_WORDING.search(answer.json()["detail"]), answer.json()["detail"]
