"""A client cannot hold a connection open by trickling its request's headers (slowloris).

uvicorn closes idle keep-alive connections but had no deadline for a request's headers:
2,000 connections sending a byte now and then stayed open as long as they liked. The real
`webhooks api` closes such a connection once its headers are overdue, while other clients
are still served; a body that stops arriving is answered 408.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from tests.daemons import free_port, get
from tests.security.served import Served, api_process, read_answer, status_of
from worker.api.limits import BodyLimit
from worker.api.protocol import HEADER_TIMEOUT
from worker.api.server import config, listen

#: How long the test keeps trickling before it gives up on the server: far past the deadline.
PATIENCE = HEADER_TIMEOUT * 12


@pytest.fixture
def served(tmp_path: Path, db_url: str, redis_url: str) -> Iterator[Served]:
    with api_process(tmp_path, DATABASE_URL=db_url, REDIS_URL=redis_url) as s:
        yield s


def trickle(sock: socket.socket, head: bytes, every: float, patience: float) -> int:
    """Send ``head`` a byte at a time, then headers forever; return the bytes sent when closed.

    Returns -1 if the server was still listening after ``patience`` seconds.
    """
    sent = 0
    give_up = time.monotonic() + patience
    filler = b"X-Slow: " + b"a" * 10_000
    stream = head + filler
    while time.monotonic() < give_up:
        try:
            sock.sendall(stream[sent % len(stream) : sent % len(stream) + 1])
            sent += 1
            sock.settimeout(every)
            if sock.recv(1024) == b"":  # the server closed the connection
                return sent
        except TimeoutError:
            continue  # nothing from the server: go on trickling
        except (ConnectionResetError, BrokenPipeError):
            return sent
    return -1


def test_a_connection_trickling_its_headers_is_closed(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sent = trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0.25, PATIENCE)
    assert sent != -1, f"still open after trickling for {PATIENCE:g} s"
    assert get(served.port, "/healthz")[0] == 200


def test_a_keep_alive_connection_trickling_its_next_request_is_closed(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sent = trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0.25, PATIENCE)
    assert sent != -1, f"still open after trickling for {PATIENCE:g} s"


def test_a_body_that_stalls_is_answered_408_and_closed() -> None:
    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        length = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    server = uvicorn.Server(config(BodyLimit(echo, 1000, idle_timeout=0.5)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": listen("127.0.0.1", port)})
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
            answer = read_answer(sock)
            assert status_of(answer) == 408, answer
            assert sock.recv(1) == b""  # closed
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            assert read_answer(sock).endswith(b"hello")
    finally:
        server.should_exit = True
        thread.join()
