"""Serve the API alone with uvicorn: `webhooks api`.

uvicorn stops accepting on SIGTERM or Ctrl-C and lets requests in flight finish (up to
``GRACE`` seconds). Its limits: a request's line and headers within ``HEADER_TIMEOUT``
seconds (`worker.api.protocol`) and ``MAX_HEAD_BYTES`` bytes, idle keep-alive connections
closed after ``KEEP_ALIVE`` seconds, at most ``MAX_CONCURRENCY`` connections at once; the
body cap is the application's (`worker.api.limits`). Its own access log is replaced by one
line per request in the product's log format (worker/observe/logs.py), with method, path,
status and duration as fields; its own lines (started, stopping, errors) are logged as
``webhooks.api.server``.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from typing import Any
from urllib.parse import quote

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.app import create_app
from worker.api.protocol import HeaderDeadline
from worker.errors import WebhooksError
from worker.observe.logs import IN_MESSAGE
from worker.settings import Settings

access = logging.getLogger("webhooks.api.access")

#: Seconds requests in flight get to finish after SIGTERM.
GRACE = 10
#: Seconds an idle keep-alive connection is kept open between requests.
KEEP_ALIVE = 5
#: Connections (and requests) at once; a request beyond it is answered 503 at once.
MAX_CONCURRENCY = 1000
#: Bytes a request line and its headers may take together; more is answered 400.
MAX_HEAD_BYTES = 16384


class AccessLog:
    """Log one line per HTTP request once its answer has started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            # The path as a URL writes it (as uvicorn's own access log does): one word, so
            # the status is always the third; the log format escapes whatever else remains.
            path = quote(scope["path"])
            access.info(
                "%s %s %d",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "client": client[0] if client else None,
                    IN_MESSAGE: ("method", "path", "status"),
                },
            )


class _ServerLines(logging.Filter):
    """Log uvicorn's own lines as the product's: under ``webhooks.api.server``, and without
    uvicorn's ``color_message`` extra (the product's format would print the text twice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        if record.name == "uvicorn" or record.name.startswith("uvicorn."):
            record.name = "webhooks.api.server"
        return True


_server_lines = _ServerLines()


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind the API's listening sockets (one per address of ``host``), or say why not.

    Bound before anything is logged or served, so a port already taken is one line, not a
    "serving" line followed by uvicorn's error.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise WebhooksError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise WebhooksError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return bound


def config(app: ASGIApp) -> uvicorn.Config:
    """Return the uvicorn configuration `webhooks api` serves ``app`` with (its limits)."""
    return uvicorn.Config(
        app,
        http=HeaderDeadline,  # uvicorn's h11 protocol with a deadline for request headers
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=MAX_CONCURRENCY,
        log_config=None,  # the product's handlers and format (worker.observe.logs.configure)
        access_log=False,  # AccessLog writes it, in the product's format
        timeout_graceful_shutdown=GRACE,
        server_header=False,
        proxy_headers=False,
    )


def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve the API on ``sockets`` (see `listen`) until SIGTERM or Ctrl-C.

    Logging is configured by the caller.
    """
    app: Any = AccessLog(create_app(settings))
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addFilter(_server_lines)  # once, however often serve() runs
    server = uvicorn.Server(config(app))
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the
    # handler it found installed: a no-op one makes that a clean exit (status 0), as the
    # relay's and workers' SIGTERM is.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        services = getattr(getattr(app.app, "state", None), "services", None)
        if services is not None:
            services.close()
