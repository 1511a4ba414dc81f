"""Receivers for the fault tests, on 127.0.0.1 only.

`Sink` is the product's receiver (`worker.dev.receiver`) verifying every request's
signature with the `standardwebhooks` package as it arrives (its timestamp tolerance would
refuse a check made minutes later) and answering what each route's policy says.
`RawServer` speaks raw HTTP/1.1 over sockets so that it can misbehave: hang, trickle, flood,
reset, close early, or present a self-signed certificate.
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
from pathlib import Path

import standardwebhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from worker.dev.receiver import Answer, Receiver, Request, running_receiver

#: (webhook-id, how many times this id reached this route before, counting from 0) -> the
#: status to answer, or (status, extra headers).
Policy = Callable[[str, int], int | tuple[int, dict[str, str]]]


def always(status: int) -> Policy:
    return lambda _id, _n: status


#: One request as the sink saw it (`Request.verified` is never None here).
Hit = Request


@dataclass
class Route:
    secret: str
    policy: Policy


@dataclass
class Sink(Receiver):
    """Record and verify every request; answer per route."""

    policies: dict[str, Route] = field(default_factory=dict)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def hits(self) -> list[Request]:
        return self.requests

    def route(self, path: str, secret: str, policy: Policy | None = None) -> None:
        """Verify requests to ``path`` with ``secret``; answer per ``policy`` (default 200)."""
        self.policies[path] = Route(secret, policy or always(200))

    def check(self, request: Request) -> str:
        route = self.policies.get(request.path)
        if route is None:
            return "no such route"
        headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
        try:
            standardwebhooks.Webhook(route.secret).verify(request.body.decode(), headers)
        except Exception as exc:  # any refusal is recorded, answered 401 and asserted on
            return f"{type(exc).__name__}: {exc}"
        return ""

    def answer(self, request: Request, n: int) -> Answer:
        key = (request.path, request.webhook_id)
        with self.lock:
            count = self.seen[key]
            self.seen[key] += 1
        answer = self.policies[request.path].policy(request.webhook_id, count)
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        return status, extra, b"ok" if status < 300 else b"nope"

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
    with running_receiver(sink):
        yield sink


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
