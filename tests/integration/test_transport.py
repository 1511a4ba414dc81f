"""Specify the HTTP edge (`worker.delivery.http.HttpSender`) against real servers on 127.0.0.1.

The servers speak raw HTTP/1.1 over sockets, each in threads of its own and stopped with
its test, so that they can misbehave on purpose: trickle, hang, reset, close early,
redirect, or present a self-signed certificate. The sender runs on an event loop of its own
(`asyncio.run`) and each failure is passed through `classify_failure`, as the engine does.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from worker.delivery.dns import Resolver
from worker.delivery.http import HttpSender as Sender
from worker.delivery.http import classify_failure
from worker.delivery.sender import Response
from worker.errors import BlockedDestination
from worker.policy.outcome import Kind, Outcome
from worker.settings import IPNetwork

LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
HUNDRED_MB = 100 * 1024 * 1024
BODY = b'{"type": "test.event", "timestamp": "2024-01-01T00:00:00Z", "data": {}}'
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}
CERT_HOST = "receiver.test"

Handler = Callable[[socket.socket, threading.Event], None]
AddrInfo = tuple[Any, Any, Any, Any, tuple[Any, ...]]
T = TypeVar("T")


class Server:
    """Accept connections on `host` and run `handler` on each in its own thread."""

    def __init__(
        self,
        handler: Handler,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.stop = threading.Event()
        self.accepted = 0
        self.listener = socket.create_server((host, port))
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
def serving(
    handler: Handler, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[Server]:
    server = Server(handler, tls, host, port)
    try:
        yield server
    finally:
        server.close()


def sender(
    allowed: Sequence[IPNetwork] = LOOPBACK,
    *,
    connect_timeout: float = 2.0,
    request_timeout: float = 5.0,
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Sender:
    """Return a Sender as the engine builds one; it opens its session on the first send."""
    extra: dict[str, Any] = {}
    if resolver is not None:
        extra["resolver"] = resolver
    if ssl_context is not None:
        extra["ssl_context"] = ssl_context
    return Sender(
        allowed_networks=allowed,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        user_agent="webhooks-test/1",
        **extra,
    )


def using(make: Callable[[], Sender], work: Callable[[Sender], Awaitable[T]]) -> T:
    """Run `work` with a fresh Sender on a loop of its own, closing the sender after."""

    async def run() -> T:
        http = make()
        try:
            return await work(http)
        finally:
            await http.close()

    return asyncio.run(run())


def post(url: str, *, max_body: int = 16384, **options: Any) -> Response:
    """POST BODY to `url` once with a fresh sender; failures raise as the sender raised."""
    return post_many([url], max_body=max_body, **options)[0]


def post_many(urls: Sequence[str], *, max_body: int = 16384, **options: Any) -> list[Response]:
    """POST BODY to each URL in turn through one sender (so connections are reused)."""

    async def work(http: Sender) -> list[Response]:
        return [await http.send(url, BODY, HEADERS, max_body=max_body) for url in urls]

    return using(lambda: sender(**options), work)


def failure(exc: BaseException) -> Outcome:
    """Classify `exc` as the engine does, checking what every failure outcome shares."""
    outcome = classify_failure(exc)
    assert outcome.kind is Kind.FAILED
    assert outcome.status_code is None
    assert outcome.error, "a failure always says what happened"
    assert "\n" not in outcome.error and len(outcome.error) <= 200
    return outcome


def answers(*addresses: str) -> Callable[[str, int], list[AddrInfo]]:
    """Return a fake getaddrinfo that answers every name with `addresses`, in order."""

    def lookup(host: str, port: int) -> list[AddrInfo]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return lookup


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


def recording(seen: list[bytes], status: str = "200 OK", body: bytes = b"ok") -> Handler:
    """Answer every request of a kept-alive connection, remembering each."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                request = read_request(conn)
            except ConnectionError:
                return  # the client closed its kept-alive connection
            seen.append(request)
            head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)

    return handler


# -- what is sent and what comes back ---------------------------------------------------------


def test_a_post_arrives_with_its_body_headers_and_user_agent() -> None:
    seen: list[bytes] = []
    with serving(recording(seen)) as server:
        response = post(server.url())
    assert response.status_code == 200
    assert response.body == b"ok"
    assert response.retry_after is None
    assert 0 < response.duration < 5
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hook HTTP/1.1\r\n")
    lowered = head.lower() + b"\r\n"  # every header line ends in CRLF
    assert b"\r\nuser-agent: webhooks-test/1\r\n" in lowered
    assert b"\r\nwebhook-id: msg_1\r\n" in lowered
    assert b"\r\ncontent-type: application/json\r\n" in lowered
    assert b"\r\naccept-encoding: identity\r\n" in lowered
    assert f"\r\ncontent-length: {len(BODY)}\r\n".encode() in lowered
    assert lowered.count(b"\r\ncontent-type:") == 1
    assert lowered.count(b"\r\nuser-agent:") == 1
    assert body == BODY


def test_the_content_type_is_only_what_the_caller_gives() -> None:
    seen: list[bytes] = []

    async def work(http: Sender) -> None:
        await http.send(server.url(), BODY, {"Content-Type": "text/plain"})
        await http.send(server.url(), BODY, {})

    with serving(recording(seen)) as server:
        using(sender, work)
    given, absent = (request.lower() for request in seen)
    assert given.count(b"\r\ncontent-type:") == 1
    assert b"\r\ncontent-type: text/plain\r\n" in given
    # No content type of the client's own (aiohttp would add application/octet-stream).
    assert b"\r\ncontent-type:" not in absent


def test_a_cookie_set_by_a_receiver_is_never_sent_back() -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        for _ in range(2):  # two requests on the same kept-alive connection
            seen.append(read_request(conn))
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 2\r\n\r\nok"
            )

    with serving(handler) as server:
        responses = post_many([server.url(), server.url()])
        assert server.accepted == 1  # one connection: the second request reused it
    assert [r.status_code for r in responses] == [200, 200]
    assert len(seen) == 2
    assert all(b"\r\ncookie:" not in request.lower() for request in seen)


def test_retry_after_is_returned_raw() -> None:
    handler = respond("503 Service Unavailable", b"busy", "Retry-After: 120\r\n")
    with serving(handler) as server:
        response = post(server.url())
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

    with serving(handler) as server:
        started = time.monotonic()
        response = post(server.url(), request_timeout=10)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.body == b"x" * 16384
    assert elapsed < 5
    # What the kernel buffers is a few MB; the client stopped reading long before 100 MB.
    assert sent[0] < HUNDRED_MB // 4


def test_max_body_is_configurable() -> None:
    with serving(respond("200 OK", b"abcdef")) as server:
        assert post(server.url(), max_body=4).body == b"abcd"
        assert post(server.url(), max_body=0).body == b""
        assert post(server.url(), max_body=6).body == b"abcdef"


def test_a_redirect_is_returned_not_followed() -> None:
    paths: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        request = read_request(conn)
        paths.append(request.split(b" ")[1])
        location = f"http://127.0.0.1:{conn.getsockname()[1]}/elsewhere"
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    with serving(handler) as server:
        response = post(server.url())
    assert response.status_code == 302
    assert paths == [b"/hook"]


def test_response_is_a_frozen_value() -> None:
    response = Response(status_code=200, retry_after=None, body=b"", duration=0.1)
    with pytest.raises(AttributeError):
        response.status_code = 500  # type: ignore[misc]


# -- deadlines ---------------------------------------------------------------------------------


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

    with serving(handler) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            post(server.url(), request_timeout=1.5)
        elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 3, elapsed
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == ("timeout", "timed out waiting for the response")


def test_a_receiver_that_never_answers_times_out() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        stop.wait(10)

    with serving(handler) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            post(server.url(), request_timeout=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 2, elapsed
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == ("timeout", "timed out waiting for the response")


def test_a_connect_timeout_longer_than_the_request_timeout_does_not_extend_it() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        stop.wait(10)

    with serving(handler) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            post(server.url(), connect_timeout=30, request_timeout=0.5)
    assert time.monotonic() - started < 1, "bounded by the 0.5 s request timeout"


# -- failures of the connection ---------------------------------------------------------------


def test_a_reset_connection_is_a_connection_error() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        # Linger 0: close with RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with serving(handler) as server, pytest.raises(aiohttp.ClientOSError) as caught:
        post(server.url())
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == ("connect", "connection reset by peer")


def test_a_response_closed_midway_is_a_protocol_error() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")

    with serving(handler) as server, pytest.raises(aiohttp.ClientPayloadError) as caught:
        post(server.url())
    # The receiver did answer, then broke its own framing: "protocol", like a bad response.
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == (
        "protocol",
        "response body cut short: not enough data to satisfy content length header"
        " (received 10 of 1000 bytes)",
    )


def test_a_connection_closed_before_any_answer_is_a_connection_error() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)

    with serving(handler) as server, pytest.raises(aiohttp.ServerDisconnectedError) as caught:
        post(server.url())
    # Nothing was answered at all: the connection failed, as with a reset ("connect").
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == (
        "connect",
        "connection closed by the receiver before it answered",
    )


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        post(f"http://127.0.0.1:{port}/")
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == ("connect", "connection refused")


def test_a_name_that_does_not_resolve_is_blocked_without_connecting() -> None:
    def nothing(host: str, port: int) -> list[AddrInfo]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with serving(respond("200 OK")) as server:
        with pytest.raises(BlockedDestination) as caught:
            post(server.url(host="nowhere.test"), resolver=nothing)
        assert server.accepted == 0
    outcome = failure(caught.value)
    assert (outcome.error_kind, outcome.error) == ("blocked", "blocked: does not resolve")


# -- which addresses are reached ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback address 127.0.0.1"),
        ("127.9.9.9", "loopback address 127.9.9.9"),
        ("localhost", "loopback address "),
        ("LOCALHOST", "loopback address "),
        # Whether the system resolver answers a rooted "localhost." varies: either way,
        # loopback or "does not resolve", nothing is reached.
        ("localhost.", ""),
        ("[::1]", "loopback address ::1"),
        ("[::ffff:127.0.0.1]", "(embeds 127.0.0.1)"),
        ("[::127.0.0.1]", "(embeds 127.0.0.1)"),
        # Legacy forms libc reads as 127.0.0.1; the sender checks them before aiohttp sees
        # them (which would refuse the all-numeric ones itself, InvalidUrlClientError).
        ("2130706433", "loopback address 127.0.0.1"),
        ("0x7f.1", "loopback address 127.0.0.1"),
        ("0x7f000001", "loopback address 127.0.0.1"),
        ("127.1", "loopback address 127.0.0.1"),
        ("0177.0.0.1", "loopback address 127.0.0.1"),
        # aiohttp would connect to this unresolved; the guard cannot read it as an address.
        ("127.0.0.1.", "not a valid IP address"),
    ],
)
def test_loopback_is_blocked_by_default_before_connecting(host: str, reason: str) -> None:
    with serving(respond("200 OK")) as server:
        with pytest.raises(BlockedDestination) as caught:
            post(server.url(host=host), allowed=())
        time.sleep(0.1)  # let a connection, had one been made, reach accept()
        assert server.accepted == 0
    outcome = failure(caught.value)
    assert outcome.error_kind == "blocked"
    assert outcome.error is not None
    assert outcome.error.startswith("blocked: ")
    assert reason in outcome.error


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0177.0.0.1", "127.0.0.1."])
def test_a_legacy_loopback_form_is_refused_even_when_loopback_is_allowed(host: str) -> None:
    # The guard reads these as 127.0.0.1, which is allowed here; but aiohttp would hand the
    # spelling to the socket layer unresolved (or refuse it itself, InvalidUrlClientError):
    # the sender refuses it first, as `endpoint add` does, whatever aiohttp's version.
    with serving(respond("200 OK", b"ok")) as server:
        with pytest.raises(BlockedDestination) as caught:
            post(server.url(host=host))
        assert server.accepted == 0
    assert failure(caught.value).error == "blocked: not a valid IP address"


def test_a_hex_loopback_form_reaches_the_checked_canonical_address_when_allowed() -> None:
    # aiohttp asks the guard's resolver for a host with letters, which connects to the
    # canonical address the guard read.
    with serving(respond("200 OK", b"ok")) as server:
        assert post(server.url(host="0x7f.1")).body == b"ok"


def test_a_name_is_resolved_once_and_the_connection_pinned_to_the_checked_address() -> None:
    # A rebinding name server: a checked answer first, then a different one. The decoy on
    # 127.0.0.2 is an allowed address too, so only pinning (not the guard) keeps it unused.
    seen: list[bytes] = []
    decoy_seen: list[bytes] = []
    calls: list[str] = []

    with (
        serving(recording(seen, "204 No Content", b"")) as server,
        serving(recording(decoy_seen), host="127.0.0.2", port=server.port) as decoy,
    ):
        given = iter([["127.0.0.1"], ["127.0.0.2"]])

        def rebinding(host: str, port: int) -> list[AddrInfo]:
            calls.append(host)
            # Later answers name the decoy, on the port the test asked for.
            return answers(*next(given, ["127.0.0.2"]))(host, port)

        url = server.url(host="hooks.example.com")

        async def work(http: Sender) -> list[int]:
            statuses = [(await http.send(url, BODY, HEADERS)).status_code]
            statuses.append((await http.send(url, BODY, HEADERS)).status_code)
            # Forget the cached answer: the kept-alive connection still goes where it went.
            connector = http._session.connector if http._session else None
            assert isinstance(connector, aiohttp.TCPConnector)
            connector.clear_dns_cache()
            statuses.append((await http.send(url, BODY, HEADERS)).status_code)
            return statuses

        statuses = using(lambda: sender(resolver=rebinding), work)
        assert server.accepted == 1
        assert decoy.accepted == 0
    assert statuses == [204, 204, 204]
    assert calls == ["hooks.example.com"]
    assert decoy_seen == []
    assert all(b"\r\nhost: hooks.example.com:" in request.lower() for request in seen)


def test_a_new_connection_checks_a_new_answer() -> None:
    # Once the pinned connection is gone and the cached answer forgotten, a rebinding
    # answer is checked like the first one: refused before connecting.
    calls: list[str] = []
    given = iter([["127.0.0.1"], ["10.9.9.9"]])

    def rebinding(host: str, port: int) -> list[AddrInfo]:
        calls.append(host)
        return answers(*next(given))(host, port)

    with serving(respond("200 OK", b"ok", "Connection: close\r\n")) as server:
        url = server.url(host="hooks.example.com")

        async def work(http: Sender) -> BaseException | None:
            assert (await http.send(url, BODY, HEADERS)).body == b"ok"
            connector = http._session.connector if http._session else None
            assert isinstance(connector, aiohttp.TCPConnector)
            connector.clear_dns_cache()
            try:
                await http.send(url, BODY, HEADERS)
            except BlockedDestination as exc:
                return exc
            return None

        refused = using(lambda: sender(resolver=rebinding), work)
        assert server.accepted == 1
    assert calls == ["hooks.example.com", "hooks.example.com"]
    assert isinstance(refused, BlockedDestination)
    assert failure(refused).error == "blocked: private address 10.9.9.9"


def test_one_refused_address_among_allowed_ones_blocks_the_host() -> None:
    with serving(respond("200 OK")) as server:
        with pytest.raises(BlockedDestination) as caught:
            post(server.url(host="hooks.example.com"), resolver=answers("127.0.0.1", "10.0.0.1"))
        assert server.accepted == 0
    assert failure(caught.value).error == "blocked: private address 10.0.0.1"


def test_closing_a_sender_stops_its_name_resolution_threads() -> None:
    used: list[threading.Thread] = []

    def lookup(host: str, port: int) -> list[AddrInfo]:
        used.append(threading.current_thread())
        return answers("127.0.0.1")(host, port)

    kept = sender(resolver=lookup)  # referenced after closing, as the engine keeps its own

    async def work(http: Sender) -> Response:
        return await http.send(server.url(host="receiver.test"), BODY, HEADERS)

    with serving(respond("200 OK", b"ok")) as server:
        assert using(lambda: kept, work).body == b"ok"
    # Resolved on a thread of the sender's own, off the event loop; gone once it closed.
    assert [thread.name.startswith("webhooks-dns") for thread in used] == [True]
    used[0].join(timeout=5)
    assert not used[0].is_alive()


def test_each_checked_address_is_tried_in_order() -> None:
    # Nothing listens on 127.0.0.2 (the server binds 127.0.0.1 only): refused, then next.
    with serving(respond("200 OK", b"ok")) as server:
        response = post(
            server.url(host="receiver.test"), resolver=answers("127.0.0.2", "127.0.0.1")
        )
    assert response.body == b"ok"


@pytest.mark.parametrize(
    ("connect_timeout", "request_timeout"), [(0.5, 5.0), (2.0, 0.5)], ids=["connect", "request"]
)
def test_a_slow_name_server_costs_no_more_than_the_connect_timeout(
    connect_timeout: float, request_timeout: float
) -> None:
    # Either bound applies, whichever is shorter: the connect timeout or the whole attempt's.
    answered = threading.Event()

    def slow(host: str, port: int) -> list[AddrInfo]:
        time.sleep(3)  # a name server that drops packets: libc retries for seconds
        answered.set()
        return answers("127.0.0.1")(host, port)

    with serving(respond("200 OK")) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            post(
                server.url(host="receiver.test"),
                resolver=slow,
                connect_timeout=connect_timeout,
                request_timeout=request_timeout,
            )
        elapsed = time.monotonic() - started
        assert server.accepted == 0
    assert elapsed < 1, elapsed  # the lookup alone takes 3 s; the bound is 0.5 s
    assert not answered.is_set()
    outcome = failure(caught.value)
    assert outcome.error_kind == "timeout"
    if connect_timeout < request_timeout:
        assert isinstance(caught.value, aiohttp.ConnectionTimeoutError)
        assert outcome.error == "timed out connecting"
    else:
        # The connect timeout is capped at the attempt's, and both timers end together:
        # aiohttp reports whichever fired first, the attempt's as a plain TimeoutError.
        assert outcome.error in ("timed out connecting", "timed out waiting for the response")


# -- TLS ---------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """Return a server context with a self-signed certificate for CERT_HOST, and its path.

    The certificate names CERT_HOST only (no IP address), so a client that checked it
    against the address it connected to would refuse it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CERT_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
    return context, cert_path


def test_a_self_signed_certificate_is_refused_as_a_tls_error(tmp_path: Path) -> None:
    tls, _ = _self_signed(tmp_path)
    with serving(respond("200 OK"), tls=tls) as server:
        url = server.url(scheme="https", host=CERT_HOST)
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
            post(url, resolver=answers("127.0.0.1"))
    outcome = failure(caught.value)
    assert outcome.error_kind == "tls"
    assert outcome.error is not None
    assert outcome.error.startswith("certificate verify failed: self")


def test_tls_verifies_the_host_name_while_connecting_to_the_pinned_address(
    tmp_path: Path,
) -> None:
    tls, cert_path = _self_signed(tmp_path)
    names: list[str | None] = []

    def remember(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    tls.sni_callback = remember
    trusting = ssl.create_default_context(cafile=str(cert_path))
    with serving(respond("200 OK", b"ok"), tls=tls) as server:
        # The certificate's name, resolved to the checked 127.0.0.1: verified and answered.
        response = post(
            server.url(scheme="https", host=CERT_HOST),
            resolver=answers("127.0.0.1"),
            ssl_context=trusting,
        )
        assert response.body == b"ok"
        # Another name for the same address: the certificate does not cover it.
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
            post(
                server.url(scheme="https", host="other.test"),
                resolver=answers("127.0.0.1"),
                ssl_context=trusting,
            )
        # The address itself is not a name the certificate covers either.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            post(server.url(scheme="https"), ssl_context=trusting)
    assert names == [CERT_HOST, "other.test", None]
    outcome = failure(caught.value)
    assert outcome.error_kind == "tls"
    assert outcome.error is not None
    assert outcome.error == (
        "certificate verify failed: Hostname mismatch, certificate is not valid for 'other.test'."
    )
