"""Postgres drops the daemons' connections, or restarts: they recover by themselves.

The relay and the workers never exit on a transient error: every database call is retried
with backoff on a fresh connection, and whatever a failure left half done (a committed
batch not pushed, a claimed delivery not recorded) is picked up again from Postgres.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from producers import Event
from tests.faults.harness import Cluster, RedisServer
from tests.faults.receivers import Sink
from worker.store import migrate

TERMINATE = """
select application_name, pg_terminate_backend(pid) as killed
from pg_stat_activity
where datname = current_database() and pid <> pg_backend_pid()
  and application_name in ('fault-relay', 'fault-worker')
"""


def test_terminated_backends_mid_batch_are_reconnected(cluster: Cluster, sink: Sink) -> None:
    c = cluster
    _, secret_a = c.endpoint(sink.url("/a"))
    _, secret_b = c.endpoint(sink.url("/b"), event_types=["order.paid"])
    sink.route("/a", secret_a)
    sink.route("/b", secret_b)
    relay = c.start_relay(lease="2s", batch_size=100)
    worker = c.start_worker(threads=4)

    killed: dict[str, int] = {"fault-relay": 0, "fault-worker": 0}
    stop = threading.Event()

    def killer() -> None:
        with psycopg.connect(c.db_url, autocommit=True) as conn:
            while not stop.wait(0.4):
                for app, hit in conn.execute(TERMINATE).fetchall():
                    killed[app] += int(hit)

    thread = threading.Thread(target=killer, daemon=True)
    ids: list[tuple[str, str]] = []
    try:
        thread.start()
        for batch in range(15):  # published while the backends keep being terminated
            kind = "order.paid" if batch % 2 else "order.created"
            ids += [(kind, i) for i in c.publish(Event(kind, {"i": i}) for i in range(60))]
            time.sleep(0.4)
        c.wait_until(
            lambda: killed["fault-relay"] >= 5 and killed["fault-worker"] >= 5,
            30,
            "several connections of each daemon to be terminated",
        )
    finally:
        stop.set()
        thread.join(timeout=10)

    c.settle(120)
    assert relay.alive() and worker.alive(), "a daemon exited on a transient error"
    expected = {("/a", i) for _, i in ids} | {("/b", i) for k, i in ids if k == "order.paid"}
    ok = sink.ok()
    assert set(ok) == expected
    assert c.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == len(
        expected
    )
    c.assert_attempts_consistent()
    assert sink.unverified() == []
    duplicates = sum(ok.values()) - len(ok)
    print(f"\nterminated {killed}; {duplicates} duplicate receipts of {len(ok)}")
    c.check()


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """Start a Postgres of the test's own (pgserver), which the test may stop and start."""
    pgserver = pytest.importorskip("pgserver")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    root = Path(tempfile.mkdtemp(prefix="webhooks-faults-pg-"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_a_postgres_restart_is_ridden_out(
    own_postgres: Any, redis_server: RedisServer, sink: Sink, tmp_path: Path
) -> None:
    # pgserver makes its command wrappers at import time, so they are looked up by name.
    pg_ctl = importlib.import_module("pgserver._commands").pg_ctl

    server = own_postgres
    info = server.get_postmaster_info()
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("create database faults")
    url = server.get_uri(database="faults")
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.migrate(conn)

    def stop_postgres() -> None:
        # immediate: no shutdown checkpoint, crash recovery on start, as after a power cut.
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start_postgres() -> None:
        args = ["-w", "-o", '-h ""', "-o", f"-k {info.socket_dir}", "-l", str(server.log)]
        pg_ctl([*args, "start"], pgdata=server.pgdata, user=server.system_user, timeout=60)

    c = Cluster(url, redis_server.url(), tmp_path)
    try:
        _, secret = c.endpoint(sink.url("/a"))
        sink.route("/a", secret)
        relay = c.start_relay(lease="2s", batch_size=100)
        worker = c.start_worker(threads=4)
        before = c.publish(Event("order.paid", {"i": i}) for i in range(400))
        c.wait_until(lambda: len(sink.ok()) >= 50, 60, "deliveries to flow")
        c.conn.close()
        stop_postgres()
        try:
            time.sleep(4)  # both daemons keep failing and backing off meanwhile
            assert relay.alive() and worker.alive()
        finally:
            start_postgres()
        c.conn = psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row)
        after = c.publish(Event("order.paid", {"i": i}) for i in range(100))

        c.settle(150)
        assert relay.alive() and worker.alive(), "a daemon exited on a transient error"
        ok = sink.ok()
        assert set(ok) == {("/a", i) for i in before + after}
        c.assert_attempts_consistent()
        assert sink.unverified() == []
        duplicates = sum(ok.values()) - len(ok)
        print(f"\npostgres restart: {duplicates} duplicate receipts of {len(ok)}")
        c.check()
    finally:
        with contextlib.suppress(Exception):
            c.close()
