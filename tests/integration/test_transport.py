"""Specify the HTTP edge against real servers on 127.0.0.1, each stopped with its test.

The servers speak raw HTTP/1.1 over sockets so that they can misbehave on purpose: trickle,
hang, reset, close early, redirect, or present a self-signed certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from worker.errors import BlockedDestination
from worker.guard import Resolver
from worker.outcome import classify_error
from worker.settings import IPNetwork
from worker.transport import Client, Response, build_client, deadline, send

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
HUNDRED_MB = 100 * 1024 * 1024
BODY = b'{"type": "test.event", "timestamp": "2024-01-01T00:00:00Z", "data": {}}'
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}

Handler = Callable[[socket.socket, threading.Event], None]


class Server:
    """Accept connections on 127.0.0.1 and run `handler` on each in its own thread."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stop = threading.Event()
        self.accepted = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass  # the client hung up or refused us: exactly what several tests provoke
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.acceptor.join(timeout=5)
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)
        assert not any(thread.is_alive() for thread in self.threads), "server thread stuck"


@contextmanager
def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(handler, tls)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def client(
    allowed: Sequence[IPNetwork] = LOOPBACK,
    request_timeout: float = 5.0,
    resolver: Resolver | None = None,
) -> Iterator[Client]:
    extra: dict[str, Any] = {} if resolver is None else {"resolver": resolver}
    http = build_client(
        allowed_networks=allowed,
        connect_timeout=2.0,
        request_timeout=request_timeout,
        user_agent="webhooks-test/1",
        **extra,
    )
    try:
        yield http
    finally:
        http.close()


def read_request(conn: socket.socket) -> bytes:
    """Read one request (head and Content-Length body) and return it whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client closed before the request ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client closed before the body ended")
        body += chunk
    return head + b"\r\n\r\n" + body


def respond(status: str, body: bytes = b"", extra: str = "") -> Handler:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        conn.sendall(head.encode() + body)

    return handler


def test_a_post_arrives_with_its_body_headers_and_user_agent() -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        seen.append(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with serving(handler) as server, client() as http:
        response = send(http, server.url(), BODY, HEADERS, timeout=5)
    assert response.status_code == 200
    assert response.body == b"ok"
    assert response.retry_after is None
    assert 0 < response.duration < 5
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hook HTTP/1.1\r\n")
    lowered = head.lower()
    assert b"user-agent: webhooks-test/1" in lowered
    assert b"webhook-id: msg_1" in lowered
    assert b"content-type: application/json" in lowered
    assert b"accept-encoding: identity" in lowered
    assert body == BODY


def test_a_cookie_set_by_a_receiver_is_never_sent_back() -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        for _ in range(2):  # two requests on the same kept-alive connection
            seen.append(read_request(conn))
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 2\r\n\r\nok"
            )

    with serving(handler) as server, client() as http:
        for _ in range(2):
            assert send(http, server.url(), BODY, HEADERS, timeout=5).status_code == 200
    assert len(seen) == 2
    assert all(b"\r\ncookie:" not in request.lower() for request in seen)


def test_retry_after_is_returned_raw() -> None:
    handler = respond("503 Service Unavailable", b"busy", "Retry-After: 120\r\n")
    with serving(handler) as server, client() as http:
        response = send(http, server.url(), BODY, HEADERS, timeout=5)
    assert (response.status_code, response.retry_after, response.body) == (503, "120", b"busy")


def test_a_huge_response_is_cut_at_max_body_and_never_read_to_the_end() -> None:
    sent = [0]

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\n\r\n"
        conn.sendall(head.encode())
        chunk = b"x" * 65536
        # Generated on the fly: neither side ever holds the 100 MB.
        while sent[0] < HUNDRED_MB and not stop.is_set():
            sent[0] += conn.send(chunk)

    with serving(handler) as server, client() as http:
        started = time.monotonic()
        response = send(http, server.url(), BODY, HEADERS, timeout=10)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.body == b"x" * 16384
    assert elapsed < 5
    # What the kernel buffers is a few MB; the client stopped reading long before 100 MB.
    assert sent[0] < HUNDRED_MB // 4


def test_max_body_is_configurable() -> None:
    with serving(respond("200 OK", b"abcdef")) as server, client() as http:
        assert send(http, server.url(), BODY, HEADERS, timeout=5, max_body=4).body == b"abcd"
        assert send(http, server.url(), BODY, HEADERS, timeout=5, max_body=0).body == b""


@pytest.mark.parametrize("phase", ["head", "body"])
def test_a_trickling_receiver_is_cut_off_at_the_deadline(phase: str) -> None:
    body = b"y" * 100
    message = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        position = 0
        if phase == "body":
            position = message.index(b"\r\n\r\n") + 4
            conn.sendall(message[:position])
        # Every byte arrives well inside any per-read timeout; only the deadline can stop it.
        while position < len(message) and not stop.wait(0.3):
            conn.sendall(message[position : position + 1])
            position += 1

    with serving(handler) as server, client(request_timeout=1.5) as http:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException) as caught:
            send(http, server.url(), BODY, HEADERS, timeout=1.5)
        elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 4
    assert classify_error(caught.value).error_kind == "timeout"


def test_a_receiver_that_never_answers_times_out() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        stop.wait(10)

    with serving(handler) as server, client(request_timeout=1.0) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as caught:
            send(http, server.url(), BODY, HEADERS, timeout=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert classify_error(caught.value).error == "timed out waiting for the response"


def test_the_attempt_timeout_bounds_a_longer_client_timeout() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        stop.wait(10)

    with serving(handler) as server, client(request_timeout=30) as http:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            send(http, server.url(), BODY, HEADERS, timeout=0.5)
    assert time.monotonic() - started < 3


def test_a_reset_connection_is_a_connection_error() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        # Linger 0: close with RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with serving(handler) as server, client() as http, pytest.raises(httpx.ReadError) as caught:
        send(http, server.url(), BODY, HEADERS, timeout=5)
    outcome = classify_error(caught.value)
    assert (outcome.error_kind, outcome.error) == ("connect", "connection reset by peer")


def test_a_response_closed_midway_is_a_protocol_error() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")

    with (
        serving(handler) as server,
        client() as http,
        pytest.raises(httpx.RemoteProtocolError) as caught,
    ):
        send(http, server.url(), BODY, HEADERS, timeout=5)
    assert classify_error(caught.value).error_kind == "protocol"


def test_a_connection_closed_before_any_answer_is_a_protocol_error() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)

    with serving(handler) as server, client() as http, pytest.raises(httpx.RemoteProtocolError):
        send(http, server.url(), BODY, HEADERS, timeout=5)


def test_a_redirect_is_returned_not_followed() -> None:
    paths: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        request = read_request(conn)
        paths.append(request.split(b" ")[1])
        location = f"http://127.0.0.1:{conn.getsockname()[1]}/elsewhere"
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    with serving(handler) as server, client() as http:
        response = send(http, server.url(), BODY, HEADERS, timeout=5)
    assert response.status_code == 302
    assert paths == [b"/hook"]


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"],
)
def test_loopback_is_blocked_by_default_before_connecting(host: str) -> None:
    with serving(respond("200 OK")) as server, client(allowed=()) as http:
        with pytest.raises(BlockedDestination) as caught:
            send(http, server.url(host=host), BODY, HEADERS, timeout=5)
        time.sleep(0.1)  # let a connection, had one been made, reach accept()
        assert server.accepted == 0
    assert "loopback" in caught.value.reason
    assert classify_error(caught.value).error_kind == "blocked"


def test_a_name_is_resolved_once_and_the_connection_pinned_to_the_checked_address() -> None:
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        calls.append(host)
        # A rebinding resolver: a checked answer first, something else afterwards.
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in next(answers)
        ]

    seen: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        seen.append(read_request(conn))
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with serving(handler) as server, client(resolver=rebinding) as http:
        response = send(http, server.url(host="receiver.test"), BODY, HEADERS, timeout=5)
    assert response.status_code == 204
    assert calls == ["receiver.test"]
    assert b"host: receiver.test:" in seen[0].lower()


def test_each_checked_address_is_tried_in_order() -> None:
    def two_addresses(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        # Nothing listens on 127.0.0.2 (the server binds 127.0.0.1 only): refused, then next.
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    with serving(respond("200 OK", b"ok")) as server, client(resolver=two_addresses) as http:
        response = send(http, server.url(host="receiver.test"), BODY, HEADERS, timeout=5)
    assert response.body == b"ok"


def test_a_slow_name_server_costs_no_more_than_the_connect_timeout() -> None:
    answered = threading.Event()

    def slow(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        time.sleep(3)  # a name server that drops packets: libc retries for seconds
        answered.set()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with serving(respond("200 OK")) as server, client(resolver=slow) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout) as caught:
            send(http, server.url(host="receiver.test"), BODY, HEADERS, timeout=0.5)
        elapsed = time.monotonic() - started
        assert server.accepted == 0
    assert elapsed < 2, elapsed  # the lookup alone takes 3 s
    assert not answered.is_set()
    assert classify_error(caught.value).error == "timed out connecting"


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with client() as http, pytest.raises(httpx.ConnectError) as caught:
        send(http, f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=5)
    outcome = classify_error(caught.value)
    assert (outcome.error_kind, outcome.error) == ("connect", "connection refused")


def _self_signed(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("receiver.test"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def test_a_self_signed_certificate_is_refused_as_a_tls_error(tmp_path: Path) -> None:
    tls = _self_signed(tmp_path)
    with (
        serving(respond("200 OK"), tls=tls) as server,
        client() as http,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        send(http, server.url(scheme="https"), BODY, HEADERS, timeout=5)
    outcome = classify_error(caught.value)
    assert outcome.error_kind == "tls"
    assert outcome.error is not None
    assert outcome.error.startswith("certificate verify failed: self")


def test_tls_uses_the_host_name_while_connecting_to_the_pinned_address(tmp_path: Path) -> None:
    tls = _self_signed(tmp_path)
    names: list[str | None] = []

    def remember(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    tls.sni_callback = remember

    def to_loopback(host: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with serving(respond("200 OK"), tls=tls) as server, client(resolver=to_loopback) as http:
        url = server.url(scheme="https", host="receiver.test")
        with pytest.raises(httpx.ConnectError) as caught:
            send(http, url, BODY, HEADERS, timeout=5)
    assert names == ["receiver.test"]
    assert classify_error(caught.value).error_kind == "tls"


def test_deadline_nests_keeping_the_earlier_end() -> None:
    from worker import transport

    with deadline(10):
        outer = transport._local.deadline
        with deadline(100):
            assert transport._local.deadline == outer
        with deadline(1):
            assert transport._local.deadline < outer
        assert transport._local.deadline == outer
    assert transport._local.deadline is None


def test_response_is_a_frozen_value() -> None:
    response = Response(status_code=200, retry_after=None, body=b"", duration=0.1)
    with pytest.raises(AttributeError):
        response.status_code = 500  # type: ignore[misc]
