"""One tenant cannot take the API's Postgres connections from the others.

A real uvicorn server, a real Postgres and a real slow receiver: a tenant's endpoint tests
wait for its own receiver, which may take the whole request timeout to answer; a name server
may take seconds to resolve the host of a URL being set. Neither may hold one of the pool's
connections meanwhile, and one tenant's tests run a few at a time (429 beyond).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from tests.daemons import free_port
from tests.helpers import run_cli
from tests.pipeline import LOOPBACK
from tests.receiver import Receiver, hold_until, running_receiver
from worker.api import create_app
from worker.api.auth import Services
from worker.api.slots import TESTS_PER_TENANT
from worker.ops import apikeys
from worker.queue.memory import MemoryQueue
from worker.settings import Settings

#: The API's pool (worker.api.auth.Services): more tests than this at once took every one.
POOL_SIZE = 10
#: How long a client waits for an answer: longer than the pool's own 10 s wait, so a call
#: starved of a connection shows as the 503 it gets, not as a client timeout.
PATIENCE = 60.0


@dataclass
class Server:
    base: str
    services: Services


@contextmanager
def api_server(settings: Settings) -> Iterator[Server]:
    """Serve the API with uvicorn on a free loopback port, in a thread of this process."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield Server(f"http://127.0.0.1:{config.port}", app.state.services)
    finally:
        server.should_exit = True
        thread.join(30)
        app.state.services.close()


def key_of(db_url: str, tenant: str) -> dict[str, str]:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        key = apikeys.create(conn, f"key of {tenant}", tenant_id=tenant)[1]
    return {"authorization": f"Bearer {key}"}


def wait_until(check: Any, what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def settings(db_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        redis_url=redis_url,
        allowed_networks=LOOPBACK,
        retry_schedule=(60,),
        request_timeout=30.0,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def test_one_tenants_slow_tests_leave_another_tenants_calls_answered(
    settings: Settings, db_url: str, receiver: Receiver
) -> None:
    released = threading.Event()
    slow = receiver.on("/slow", hold_until(released))
    fast = receiver.url("/fast")
    acme, globex = key_of(db_url, "acme"), key_of(db_url, "globex")
    fired = POOL_SIZE + 2
    with api_server(settings) as api, ThreadPoolExecutor(fired) as clients:
        made = httpx.post(f"{api.base}/v1/endpoints", json={"url": slow}, headers=acme)
        assert made.status_code == 201, made.text
        test = f"{api.base}/v1/endpoints/{made.json()['id']}/test"
        tests: list[Future[httpx.Response]] = [
            clients.submit(httpx.post, test, headers=acme, timeout=PATIENCE) for _ in range(fired)
        ]
        try:
            # Every test is either at the receiver or answered: before the fix, the pool's
            # ten connections are all held by tests waiting for the receiver by then.
            wait_until(
                lambda: len(receiver.to("/slow")) + sum(t.done() for t in tests) >= POOL_SIZE,
                "the tests to reach the receiver or be refused",
            )
            listed = httpx.get(f"{api.base}/v1/endpoints", headers=globex, timeout=PATIENCE)
            assert listed.status_code == 200, listed.text
            # ... while acme's tests are still in flight at its receiver.
            assert not released.is_set() and len(receiver.to("/slow")) >= 1
            assert sum(not t.done() for t in tests) >= 1

            # Another tenant's own test has slots of its own.
            mine = httpx.post(f"{api.base}/v1/endpoints", json={"url": fast}, headers=globex)
            assert mine.status_code == 201, mine.text
            tested = httpx.post(
                f"{api.base}/v1/endpoints/{mine.json()['id']}/test",
                headers=globex,
                timeout=PATIENCE,
            )
            assert tested.status_code == 200 and tested.json()["ok"], tested.text
        finally:
            released.set()
        answers = [t.result() for t in tests]
    refused = [a for a in answers if a.status_code == 429]
    passed = [a for a in answers if a.status_code == 200]
    assert len(passed) == TESTS_PER_TENANT and all(a.json()["ok"] for a in passed)
    assert len(refused) == fired - TESTS_PER_TENANT
    assert len(receiver.to("/slow")) == TESTS_PER_TENANT
    for answer in refused:
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert problem["status"] == 429 and problem["type"].endswith("/too-many-tests")
        wait = int(answer.headers["retry-after"])
        assert 1 <= wait <= settings.request_timeout + 10


def test_an_endpoint_test_holds_no_connection_while_the_receiver_answers(
    settings: Settings, db_url: str, receiver: Receiver
) -> None:
    """`webhooks endpoint test`, the CLI: no connection of it is open during the attempt."""
    released = threading.Event()
    slow = receiver.on("/slow", hold_until(released))
    env = {"DATABASE_URL": db_url, "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"}
    made = run_cli("endpoint", "add", slow, "--json", env=env)
    assert made.returncode == 0, made.stderr
    endpoint = json.loads(made.stdout)["id"]
    command = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "endpoint", "test", endpoint, "--json"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        receiver.wait_for("/slow", 1, timeout=PATIENCE)
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            ).fetchone()
        assert row is not None and row[0] == 0, f"{row[0]} connections open during the attempt"
    finally:
        released.set()
        out, err = command.communicate(timeout=PATIENCE)
    assert command.returncode == 0, err
    attempt = json.loads(out)
    assert attempt["outcome"] == "succeeded" and attempt["delivery_status"] == "succeeded"
    assert attempt["trigger"] == "test"


def test_resolving_a_new_urls_host_holds_no_pooled_connection(
    settings: Settings, db_url: str
) -> None:
    """While a name server answers, every one of the API's connections can be taken."""
    acme = key_of(db_url, "acme")
    got: list[bool] = []
    called = threading.Event()

    with api_server(settings) as api:

        def resolver(host: str, port: int) -> list[Any]:
            # Run by the check of the URL being set: take every connection of the pool.
            # Were one held by the request resolving this, the last would never come.
            try:
                with ExitStack() as stack:
                    for _ in range(POOL_SIZE):
                        stack.enter_context(api.services.connection())
                got.append(True)
            except Exception:
                got.append(False)
            finally:
                called.set()
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        api.services.resolver = resolver
        made = httpx.post(
            f"{api.base}/v1/endpoints",
            json={"url": "http://hooks.acme.example/in"},
            headers=acme,
            timeout=PATIENCE,
        )
        assert made.status_code == 201, made.text
        wait_until(called.is_set, "the URL's host to be resolved")
        wait_until(lambda: len(got) == 1, "the resolver to take the pool's connections")
        assert got == [True]
        changed = httpx.patch(
            f"{api.base}/v1/endpoints/{made.json()['id']}",
            json={"url": "http://hooks.acme.example/other"},
            headers=acme,
            timeout=PATIENCE,
        )
        assert changed.status_code == 200, changed.text
        wait_until(lambda: len(got) == 2, "the new URL's host to be resolved")
        assert got == [True, True]


def test_asking_the_broker_for_the_status_holds_no_pooled_connection(
    settings: Settings, db_url: str
) -> None:
    """A broker slow to answer the queue's depth does not keep a connection of the pool."""
    acme = key_of(db_url, "acme")
    got: list[bool] = []

    with api_server(settings) as api:

        class SlowBroker(MemoryQueue):
            def depth(self) -> int:
                # Were one held by the request asking this, the last would never come.
                try:
                    with ExitStack() as stack:
                        for _ in range(POOL_SIZE):
                            stack.enter_context(api.services.connection())
                    got.append(True)
                except Exception:
                    got.append(False)
                return 7

        api.services._queue = SlowBroker()  # the broker this process would have opened
        answer = httpx.get(f"{api.base}/v1/status", headers=acme, timeout=PATIENCE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["queue_depth"] == 7 and got == [True]
