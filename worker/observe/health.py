"""The HTTP endpoint of the relay and of the workers: /metrics, /healthz and /readyz.

/healthz answers 200 while the process serves. /readyz answers 200 only when Postgres
answers, the broker (Redis) answers and the schema is migrated to the version this code
needs; otherwise 503 with a one-line reason. Every check is bounded in time (`Deadline`),
so a hung database makes a probe fail, never hang.

The relay serves its endpoint from a thread (`start_relay_endpoint`). The workers' endpoint
is a process of its own that Dramatiq forks beside the worker processes
(`serve_workers`, passed to Dramatiq's ``--fork-function`` by `webhooks worker`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from worker.errors import WebhooksError
from worker.observe import logs, metrics
from worker.outages import first_line
from worker.queue import BrokerError
from worker.queue import from_url as broker_from_url
from worker.settings import Settings
from worker.store import migrate as migrations
from worker.store.db import time_limit

log = logging.getLogger("webhooks.health")

T = TypeVar("T")

#: Interface the endpoint listens on (Prometheus and the kubelet scrape from outside).
LISTEN_HOST = "0.0.0.0"
#: Seconds a readiness probe or a backlog read may take before it counts as failed.
CHECK_TIMEOUT = 3.0


class Deadline:
    """Run a blocking call in a helper thread and stop waiting for it after ``timeout``.

    A call still running when the next one arrives is not queued behind: the next one fails
    at once, so a hung database cannot pile up waiting threads.
    """

    def __init__(self, timeout: float, name: str) -> None:
        self.timeout = timeout
        self.name = name
        self._lock = threading.Lock()
        self._busy: threading.Thread | None = None

    def call(self, func: Callable[[], T]) -> T:
        """Return ``func()``, or raise TimeoutError when it takes longer than the timeout."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = func()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        with self._lock:
            if self._busy is not None and self._busy.is_alive():
                raise TimeoutError(f"the previous {self.name} is still running")
            thread = threading.Thread(target=run, name=self.name, daemon=True)
            thread.start()
            self._busy = thread
        thread.join(self.timeout)
        if thread.is_alive():
            raise TimeoutError(f"{self.name} took longer than {self.timeout:g}s")
        if "error" in box:
            raise box["error"]
        result: T = box["value"]
        return result


@dataclass(frozen=True)
class Verdict:
    """Say whether the process is ready, and why not."""

    ready: bool
    reason: str


class Readiness:
    """Check Postgres, the broker and the schema version; cache the verdict ``ttl`` seconds.

    A schema newer than the code is ready: migrations are applied before new code rolls out,
    so the old replicas keep serving meanwhile.
    """

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        *,
        timeout: float = CHECK_TIMEOUT,
        ttl: float = 1.0,
        expected_version: int | None = None,
        extra: Callable[[], str | None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.extra = extra
        self.broker_url = broker_url
        self.ttl = ttl
        self.expected_version = (
            migrations.expected_version() if expected_version is None else expected_version
        )
        self._deadline = Deadline(timeout, "readiness check")
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._checked_at = 0.0

    def check(self) -> Verdict:
        """Return the current verdict (checking again once the cached one is stale)."""
        with self._lock:
            if self._verdict is not None and time.monotonic() - self._checked_at < self.ttl:
                return self._verdict
            try:
                verdict = self._deadline.call(self._probe)
            except TimeoutError as exc:
                verdict = Verdict(False, str(exc))
            self._verdict, self._checked_at = verdict, time.monotonic()
            if not verdict.ready:
                log.debug("not ready: %s", verdict.reason)
            return verdict

    def _probe(self) -> Verdict:
        try:
            # Closed on exit: a probe holds no connection between checks.
            with (
                psycopg.connect(
                    self.database_url,
                    autocommit=True,
                    connect_timeout=2,
                    fallback_application_name="webhooks-health",
                ) as conn,
                conn.transaction(),
            ):
                time_limit(conn, 2.0)
                version = migrations.current_version(conn)
        except psycopg.Error as exc:
            return Verdict(False, f"database unavailable: {first_line(exc)}")
        if version < self.expected_version:
            return Verdict(
                False,
                f"schema at version {version}, this code needs {self.expected_version}:"
                " run `webhooks migrate`",
            )
        # The configured broker, Redis or RabbitMQ, connected for this probe only.
        broker = broker_from_url(self.broker_url)
        try:
            broker.ping()
        except BrokerError as exc:
            return Verdict(False, f"broker unavailable: {first_line(exc)}")
        finally:
            broker.close()
        trouble = self.extra() if self.extra is not None else None
        if trouble is not None:
            return Verdict(False, trouble)
        return Verdict(True, "ready")


class EndpointServer(ThreadingHTTPServer):
    """Serve /metrics from ``registry``, /healthz, and /readyz from ``readiness``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, readiness: Readiness
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: EndpointServer
    timeout = 10  # seconds a client may take to send its request

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._reply(200, "ok")
        elif path == "/readyz":
            verdict = self.server.readiness.check()
            self._reply(200 if verdict.ready else 503, verdict.reason)
        else:
            self._reply(404, "not found: try /metrics, /healthz or /readyz")

    def _metrics(self) -> None:
        encode, content_type = choose_encoder(self.headers.get("accept", ""))
        try:
            body = encode(self.server.registry)
        except Exception:
            log.exception("collecting metrics failed")
            self._reply(500, "collecting metrics failed")
            return
        self._send(200, body, content_type)

    def _reply(self, status: int, text: str) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def listen(
    port: int, variable: str, registry: CollectorRegistry, readiness: Readiness
) -> EndpointServer:
    """Bind the endpoint to ``port``; raise WebhooksError naming ``variable`` if it cannot."""
    try:
        return EndpointServer((LISTEN_HOST, port), registry, readiness)
    except OSError as exc:
        raise WebhooksError(
            f"cannot listen on port {port} ({variable}): {exc.strerror or exc}"
        ) from exc


def ensure_port_free(port: int, variable: str) -> None:
    """Fail early, naming ``variable``, when something already listens on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LISTEN_HOST, port))
        except OSError as exc:
            raise WebhooksError(
                f"cannot listen on port {port} ({variable}): {exc.strerror or exc}"
            ) from exc


# -- the relay ----------------------------------------------------------------------------


@dataclass
class RelayEndpoint:
    """Serve the relay's endpoint from a thread until `close`."""

    server: EndpointServer
    thread: threading.Thread
    backlog: metrics.PostgresBacklog

    @property
    def port(self) -> int:
        """Return the port listened on."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port and the backlog's connection."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.backlog.close()


def start_relay_endpoint(settings: Settings, stats: metrics.RelayCounts) -> RelayEndpoint:
    """Serve the relay's metrics (its counts, the backlog gauges) and probes from a thread."""
    database_url = settings.require_database_url()
    backlog = metrics.PostgresBacklog(database_url)
    deadline = Deadline(CHECK_TIMEOUT, "backlog query")
    collector = metrics.BacklogCollector(lambda: deadline.call(backlog.read))
    server = listen(
        settings.relay_metrics_port,
        "WEBHOOKS_RELAY_METRICS_PORT",
        metrics.relay_registry(stats, collector),
        Readiness(database_url, settings.broker_url),
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics endpoint", daemon=True)
    thread.start()
    log.info("serving /metrics, /healthz and /readyz", extra={"port": settings.relay_metrics_port})
    return RelayEndpoint(server, thread, backlog)


# -- the workers --------------------------------------------------------------------------

#: Seconds the workers stay not ready after an attempt could not be signed: long enough to
#: span a few retries of the endpoints concerned, so a probe does not flap between them.
SECRET_FAILURE_WINDOW = 300.0


def secret_trouble(
    registry: CollectorRegistry, now: float | None = None, window: float = SECRET_FAILURE_WINDOW
) -> str | None:
    """Return why the workers are not ready if an attempt lately could not be signed."""
    stamp = registry.get_sample_value(metrics.SECRET_FAILURE)
    if not stamp:
        return None
    ago = (time.time() if now is None else now) - stamp
    if ago > window:
        return None
    return (
        f"WEBHOOKS_SECRET_KEY does not open an endpoint's secret (last attempt"
        f" {max(0, round(ago))}s ago): its attempts fail with error kind 'secret'"
    )


def serve_workers() -> int:
    """Serve the workers' endpoint until SIGTERM; return the exit status.

    Dramatiq runs it in a process forked from its main process, beside the worker
    processes; it sums their metric files in PROMETHEUS_MULTIPROC_DIR (set by
    `webhooks worker`) and deletes them when it stops.
    """
    settings = Settings.from_env()  # a process's entry point: Dramatiq forks it bare
    logs.configure(settings.log_format, settings.log_level)
    path = settings.metrics_multiproc_dir
    if not path:
        log.error("PROMETHEUS_MULTIPROC_DIR is not set: start the workers with `webhooks worker`")
        return 1
    registry = metrics.worker_registry(path, root_pid=os.getppid())
    try:
        server = listen(
            settings.metrics_port,
            "WEBHOOKS_METRICS_PORT",
            registry,
            Readiness(
                settings.require_database_url(),
                settings.broker_url,
                extra=lambda: secret_trouble(registry),
            ),
        )
    except WebhooksError as exc:
        log.error("%s", exc)
        return 1
    log.info("serving /metrics, /healthz and /readyz", extra={"port": settings.metrics_port})
    try:
        server.serve_forever()
    finally:  # Dramatiq stops this process with SystemExit from its SIGTERM handler
        server.server_close()
        metrics.clear_multiproc_dir(path)
    return 0
