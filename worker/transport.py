"""Send one webhook over HTTP: the only module that opens connections to receivers.

Delivery rules kept here:

- Redirects are never followed and the environment (proxies, CA overrides) is ignored.
- Each new connection resolves its host once through `worker.guard`, which checks every
  address, and connects to a checked address: a second DNS answer cannot be used
  (no DNS rebinding). TLS still verifies the certificate against the host name, because
  httpcore starts TLS with the URL's host as server name.
- An attempt ends by its overall deadline: httpx timeouts apply per socket operation, so
  a receiver trickling a byte at a time could otherwise hold a worker thread for ever. Name
  resolution counts against the connect timeout and the deadline too.
- At most ``max_body`` bytes of the response are kept; the rest is never read.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpcore
import httpx

from worker.guard import Resolver, parse_ip_literal, resolve
from worker.settings import IPNetwork

__all__ = ["Client", "Response", "build_client", "deadline", "send"]

# Dramatiq runs a handful of threads per process; these bound the sockets one process keeps
# while letting each thread hold a connection to a few receivers.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)
# Large request bodies are written in slices so the deadline is re-checked between them.
_WRITE_SLICE = 64 * 1024

_local = threading.local()


@dataclass(frozen=True)
class Response:
    """Hold what one attempt got back: status, Retry-After, the start of the body, time."""

    status_code: int
    retry_after: str | None
    body: bytes
    duration: float


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every network operation of this thread inside the block to `seconds` in all.

    Nested deadlines keep the earlier end.
    """
    previous: float | None = getattr(_local, "deadline", None)
    end = time.monotonic() + seconds
    _local.deadline = end if previous is None else min(end, previous)
    try:
        yield
    finally:
        _local.deadline = previous


class Client:
    """A long-lived sender: the guarded transport plus the headers every attempt carries.

    Requests go straight to httpx's transport rather than through `httpx.Client`: a webhook
    POST needs none of the client's per-request work (URL and header merging, auth,
    redirect handling, cookies), and skipping it takes about half the CPU of an attempt.
    Keeping no cookie jar is also a rule of its own: a receiver's `Set-Cookie` is never
    sent back, to it or to anyone else.
    """

    def __init__(
        self, transport: httpx.BaseTransport, timeout: httpx.Timeout, headers: Mapping[str, str]
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.headers = dict(headers)

    def close(self) -> None:
        """Close every pooled connection."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_client(
    *,
    allowed_networks: Sequence[IPNetwork],
    connect_timeout: float,
    request_timeout: float,
    user_agent: str,
    resolver: Resolver = socket.getaddrinfo,
) -> Client:
    """Return a long-lived client that only reaches checked addresses and never redirects."""
    return Client(
        _GuardedTransport(_GuardedBackend(tuple(allowed_networks), resolver)),
        httpx.Timeout(request_timeout, connect=connect_timeout),
        {
            "accept": "*/*",
            "user-agent": user_agent,
            # A compressed body could inflate far beyond max_body while being decoded.
            "accept-encoding": "identity",
        },
    )


def send(
    client: Client,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    max_body: int = 16384,
) -> Response:
    """POST `body` to `url` within `timeout` seconds and return the start of the answer.

    httpx errors and BlockedDestination propagate unchanged for `classify_error`.
    """
    started = time.monotonic()
    request = httpx.Request(
        "POST",
        url,
        content=body,
        headers={**client.headers, **headers},
        extensions={"timeout": _cap_timeouts(client.timeout, timeout)},
    )
    kept = bytearray()
    with deadline(timeout):
        response = client.transport.handle_request(request)
        try:
            if max_body > 0:
                # iter_raw hands over what each socket read returned (at most 64 KiB), so
                # stopping here leaves the rest unread; closing then drops the connection.
                for chunk in response.iter_raw():
                    kept += chunk[: max_body - len(kept)]
                    if len(kept) >= max_body:
                        break
        finally:
            response.close()
    return Response(
        status_code=response.status_code,
        retry_after=response.headers.get("retry-after"),
        body=bytes(kept),
        duration=time.monotonic() - started,
    )


def _cap_timeouts(base: httpx.Timeout, timeout: float) -> dict[str, float]:
    # The deadline bounds socket operations; the wait for a pooled connection happens before
    # any of them, so cap it (and the rest, for clarity) here as well.
    def cap(value: float | None) -> float:
        return timeout if value is None else min(value, timeout)

    return {
        "connect": cap(base.connect),
        "read": cap(base.read),
        "write": cap(base.write),
        "pool": cap(base.pool),
    }


def _remaining(timeout: float | None, error: type[Exception]) -> float | None:
    """Return `timeout` capped at what is left of this thread's deadline."""
    end: float | None = getattr(_local, "deadline", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("deadline exceeded")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Cap each read, write and TLS handshake of a connection at the thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_SLICE):
            piece = buffer[start : start + _WRITE_SLICE]
            self._stream.write(piece, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context, server_hostname, _remaining(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Connect only to addresses `worker.guard` checked, resolving each host once."""

    def __init__(self, allowed: tuple[IPNetwork, ...], resolver: Resolver) -> None:
        self._allowed = allowed
        self._resolver = resolver
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # Raises BlockedDestination, which httpx lets through unchanged.
        addresses = self._resolve(host, port, _remaining(timeout, httpcore.ConnectTimeout))
        options = list(socket_options or ())
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = self._backend.connect_tcp(
                    address,
                    port,
                    timeout=_remaining(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        assert failure is not None  # resolve never returns an empty list
        raise failure

    def _resolve(self, host: str, port: int, seconds: float | None) -> list[str]:
        if parse_ip_literal(host) is not None:
            return resolve(host, port, self._allowed, self._resolver)
        # getaddrinfo cannot be interrupted and a name server that drops packets keeps it
        # for the resolver's own timeouts (5 s a try, per server). It runs in a thread of its
        # own, so the attempt stops waiting at its connect timeout and deadline instead.
        outcome: list[list[str] | BaseException] = []
        done = threading.Event()

        def lookup() -> None:
            try:
                outcome.append(resolve(host, port, self._allowed, self._resolver))
            except BaseException as exc:  # handed to the waiting thread
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=lookup, name="webhooks-resolve", daemon=True).start()
        if not done.wait(seconds):
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {seconds:.3g}s")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> NoReturn:
        raise httpcore.ConnectError("unix sockets are not webhook destinations")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """Use httpx's own transport with the connection pool on the guarded backend.

    httpx.HTTPTransport takes no network backend, but everything else it does (request
    conversion, mapping httpcore errors to httpx ones) is what we want. So it is built as
    usual and its pool, which has made no connection yet, is replaced by one with the same
    settings plus our backend. The alternative, a BaseTransport of our own, would copy
    that code and import httpx's private error mapping.
    """

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        # verify=True with trust_env=False: certifi's CA bundle, whatever the environment says.
        ssl_context = httpx.create_ssl_context(verify=True, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=_LIMITS, retries=0)
        self._pool.close()
        self._pool = _Pool(
            ssl_context=ssl_context,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            http1=True,
            http2=False,
            # Retrying a connect inside the client would hide attempts from the delivery
            # state; the schedule in Postgres does the retrying.
            retries=0,
            network_backend=backend,
        )


class _Pool(httpcore.ConnectionPool):
    """httpcore's connection pool, except that it never closes a connection it handed out.

    httpcore 1.0.9 gives a waiting request an idle connection, and the request's thread
    starts it a moment later. A pass run by another thread in between still sees the
    connection idle and may close it as surplus or expired, after the request has started:
    the receiver gets the POST while the worker reads "bad file descriptor" and records a
    failure, so the delivery is sent again (encode/httpcore#1110; 2 failed requests in
    10,731 from 32 threads on one process). A connection a request in the pool refers to
    stays in the pool instead; every other decision is httpcore's.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.ConnectionInterface]:
        closing = super()._assign_requests_to_connections()
        given = {id(r.connection) for r in self._requests if r.connection is not None}
        self._connections.extend(c for c in closing if id(c) in given)
        return [c for c in closing if id(c) not in given]
