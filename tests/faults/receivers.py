"""Receivers for the fault tests, on 127.0.0.1 only.

`Sink` is a well-behaved HTTP receiver that verifies every request's signature with the
`standardwebhooks` package as it arrives (its timestamp tolerance would refuse a check made
minutes later) and answers what each route's policy says. `RawServer` speaks raw HTTP/1.1
over sockets so that it can misbehave: hang, trickle, flood, reset, close early, or present
a self-signed certificate.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import standardwebhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: (webhook-id, how many times this id reached this route before, counting from 0) -> the
#: status to answer, or (status, extra headers).
Policy = Callable[[str, int], int | tuple[int, dict[str, str]]]


def always(status: int) -> Policy:
    return lambda _id, _n: status


@dataclass(frozen=True)
class Hit:
    """One request as the sink saw it."""

    path: str
    webhook_id: str
    status: int
    verified: bool
    at: float
    #: Why the signature was refused, if it was.
    problem: str = ""


@dataclass
class Route:
    secret: str
    policy: Policy


@dataclass
class Sink:
    """Record and verify every request; answer per route."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    #: Requests whose sender vanished before the body ended (a killed worker): not answered.
    cut_short: int = 0
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, secret: str, policy: Policy | None = None) -> None:
        """Verify requests to ``path`` with ``secret``; answer per ``policy`` (default 200)."""
        self.routes[path] = Route(secret, policy or always(200))

    def _handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        route = self.routes.get(path)
        webhook_id = headers.get("webhook-id", "")
        problem = "no such route"
        if route is not None:
            try:
                standardwebhooks.Webhook(route.secret).verify(
                    body.decode(), {k: v for k, v in headers.items() if k.startswith("webhook-")}
                )
                problem = ""
            except Exception as exc:  # any refusal is recorded, answered 401 and asserted on
                problem = f"{type(exc).__name__}: {exc}"
        if problem:
            with self.lock:
                self.hits.append(Hit(path, webhook_id, 401, False, time.time(), problem))
            return 401, {}
        assert route is not None
        with self.lock:
            n = self.seen[(path, webhook_id)]
            self.seen[(path, webhook_id)] += 1
        answer = route.policy(webhook_id, n) if route is not None else 404
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        with self.lock:
            self.hits.append(Hit(path, webhook_id, status, True, time.time()))
        return status, extra

    def to(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def ok(self) -> Counter[tuple[str, str]]:
        """Count the 2xx answers per (path, webhook-id)."""
        with self.lock:
            return Counter((h.path, h.webhook_id) for h in self.hits if 200 <= h.status < 300)

    def unverified(self) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if not h.verified]


@contextlib.contextmanager
def running_sink() -> Iterator[Sink]:
    """Serve a Sink on a free loopback port for the duration of the block."""
    sink = Sink()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:
                # The worker died while sending: nobody is left to answer, as for any
                # receiver, an incomplete request is no delivery.
                with sink.lock:
                    sink.cut_short += 1
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = sink._handle(self.path, headers, body)
            payload = b"ok" if status < 300 else b"nope"
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the worker may be gone (SIGKILL)
                self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a killed worker resets its connections: expected here

    server = Server(("127.0.0.1", 0), Handler)
    sink.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


# -- misbehaving receivers ----------------------------------------------------------------

Handler = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """Accept connections on 127.0.0.1; run `handler` on each in its own thread."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stop = threading.Event()
        self.accepted = 0
        self.paths: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

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
            conn.settimeout(10)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.handler(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass  # the client hung up or refused us: what several receivers provoke
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.acceptor.join(timeout=5)
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)


def read_request(conn: socket.socket) -> bytes:
    """Read one request (head and Content-Length body); return its request line."""
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
    return head.split(b"\r\n")[0]


def wait_for_hangup(conn: socket.socket, stop: threading.Event, limit: float = 60) -> None:
    """Block until the client closes the connection (or the server stops)."""
    end = time.monotonic() + limit
    while not stop.is_set() and time.monotonic() < end:
        ready, _, _ = select.select([conn], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):
                if not conn.recv(65536):
                    return
            if conn.fileno() < 0:
                return


def respond(status: str, body: bytes = b"", extra: str = "") -> Handler:
    """Answer every request with this status line, body and extra header lines."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        conn.sendall((head + extra + "\r\n").encode() + body)

    return handler


def hang_before_headers(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    wait_for_hangup(conn, stop)


def trickle_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
    # One byte every 0.2 s: each arrives well inside any per-read timeout.
    for _ in range(1000):
        if stop.wait(0.2):
            return
        conn.sendall(b"x")


HUNDRED_MB = 100 * 1024 * 1024


def flood(sent: list[int]) -> Handler:
    """Answer 200 with a 100 MB body generated on the fly; count the bytes sent."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        left = HUNDRED_MB
        while left > 0 and not stop.is_set():
            n = conn.send(chunk[:left])
            left -= n
            sent[0] += n

    return handler


def reset(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    # Linger 0: close with RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_mid_response(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")


def redirect_to(location: str, seen: list[str]) -> Handler:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        seen.append(read_request(conn).decode())
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    return handler


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """Return a server TLS context with a fresh self-signed certificate for 127.0.0.1."""
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
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
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
