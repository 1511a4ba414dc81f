"""Send webhooks over HTTP from the engine's event loop: the only code that reaches receivers.

aiohttp rather than httpx here, by measurement (README, Performance): against a receiver
answering in 100 ms, one process with httpx's AsyncClient reached 80 requests/s at 256 in
flight and httpx.Client shared by 128 threads 190/s, while aiohttp held 256-512 in flight at
0.13 ms of CPU each. Delivery rules kept here:

- Redirects are never followed, cookies never kept, the environment (proxies) ignored.
- Each new connection resolves its host once through `worker.delivery.dns`, which checks every
  address with `worker.policy.guard`; aiohttp then connects to one of those checked
  addresses (no DNS rebinding) and verifies TLS against the URL's host name. IP literals,
  which aiohttp does not resolve, are checked here before the request.
- An attempt ends by its overall deadline (name resolution, connect, TLS, send, wait and
  read all count), and name resolution also by the connect timeout.
- At most ``max_body`` bytes of the response are read; the rest is never read.

Certificates are checked against certifi's CA bundle, whatever the environment says;
``ssl_context`` replaces it, for tests that need to trust a self-signed receiver.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError, TransferEncodingError

from worker.delivery.dns import Resolver, resolve
from worker.delivery.sender import Response
from worker.errors import BlockedDestination
from worker.policy import destination
from worker.policy.outcome import ErrorKind, Kind, Outcome, short
from worker.settings import IPNetwork

__all__ = ["HttpSender", "classify_failure"]

#: Threads that run blocking getaddrinfo calls; a name server that never answers holds one
#: until its own timeouts, while the attempt stops waiting at its connect timeout.
_RESOLVER_THREADS = 16
#: URLs remembered as checked; past this many the memory starts again.
_CHECKED_KEPT = 4096


class _GuardedResolver(AbstractResolver):
    """Resolve a host once and hand aiohttp only addresses `worker.policy.guard` accepted."""

    def __init__(self, allowed: tuple[IPNetwork, ...], resolver: Resolver) -> None:
        self._allowed = allowed
        self._resolver = resolver
        self._pool = ThreadPoolExecutor(_RESOLVER_THREADS, thread_name_prefix="webhooks-dns")

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        # Raises BlockedDestination (not an OSError, so aiohttp lets it through unchanged).
        addresses = await loop.run_in_executor(
            self._pool, resolve, host, port, self._allowed, self._resolver
        )
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class HttpSender:
    """A long-lived HTTP `Sender` of one event loop: guarded connections, pooled per host."""

    def __init__(
        self,
        *,
        allowed_networks: Sequence[IPNetwork],
        connect_timeout: float,
        request_timeout: float,
        user_agent: str,
        max_connections: int = 512,
        resolver: Resolver = socket.getaddrinfo,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._resolver = resolver
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout, connect=min(connect_timeout, request_timeout)
        )
        self._headers = {
            "accept": "*/*",
            "user-agent": user_agent,
            # A compressed body could inflate far beyond max_body while being decoded.
            "accept-encoding": "identity",
        }
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._dns: _GuardedResolver | None = None
        self._checked: dict[str, None] = {}

    def _open(self) -> aiohttp.ClientSession:
        # The connector does not close a resolver it was given: `close` does.
        self._dns = _GuardedResolver(self._allowed, self._resolver)
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            resolver=self._dns,
            # Cached answers are checked ones; the cache only saves lookups.
            ttl_dns_cache=10,
            ssl=self._ssl,
            keepalive_timeout=30,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=self._timeout,
            trust_env=False,
            auto_decompress=False,
            skip_auto_headers=("content-type",),
            # Copied under each request's own (which win) in C, not merged in Python.
            headers=self._headers,
        )

    def _check_literal(self, url: str) -> None:
        """Check a URL whose host is an IP literal: aiohttp connects to those unresolved.

        The same rule, on the same reading of the URL, as the checks when an endpoint's
        URL is set (`worker.policy.destination`). URLs already found safe are remembered,
        so a delivery's hot path parses each endpoint's URL once, not once per attempt.
        """
        if url in self._checked:
            return
        where = destination.target(url)
        reason = destination.refusal(where, self._allowed)
        if reason is not None:
            raise BlockedDestination(where.host, reason)
        if len(self._checked) >= _CHECKED_KEPT:
            self._checked.clear()
        self._checked[url] = None

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], *, max_body: int = 16384
    ) -> Response:
        """POST `body` to `url` within the deadline and return the start of the answer.

        Failures propagate as raised, for `classify_failure`.
        """
        started = time.monotonic()
        self._check_literal(url)
        if self._session is None:
            self._session = self._open()
        async with self._session.post(
            url, data=body, headers=headers, allow_redirects=False
        ) as response:
            kept = b""
            while len(kept) < max_body:
                chunk = await response.content.read(max_body - len(kept))
                if not chunk:
                    break
                kept += chunk
            if not response.content.at_eof():
                # The rest is never read: the connection cannot be reused.
                response.close()
            return Response(
                status_code=response.status,
                retry_after=response.headers.get("retry-after"),
                body=kept,
                duration=time.monotonic() - started,
            )

    async def close(self) -> None:
        """Close every pooled connection and stop the name resolution threads."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._dns is not None:
            await self._dns.close()
            self._dns = None


def classify_failure(exc: BaseException) -> Outcome:
    """Return the outcome of an attempt that raised instead of answering."""
    kind, message = _failure(exc)
    return Outcome(Kind.FAILED, None, kind, message)


def _failure(exc: BaseException) -> tuple[ErrorKind, str]:
    if isinstance(exc, BlockedDestination):
        return ErrorKind.BLOCKED, f"blocked: {exc.reason}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ErrorKind.TIMEOUT, "timed out connecting"
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, "timed out waiting for the response"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        if isinstance(cert, ssl.SSLError):
            return ErrorKind.TLS, _tls_message(cert)
        return ErrorKind.TLS, short(f"certificate verify failed: {cert}")
    if isinstance(exc, aiohttp.ClientSSLError):
        # aiohttp keeps the ssl module's error as os_error (and raises from it).
        cause = exc.os_error
        if isinstance(cause, ssl.SSLError):
            return ErrorKind.TLS, _tls_message(cause)
        return ErrorKind.TLS, short(str(cause)) or "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.CONNECT, "name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECT, _os_text(exc.os_error, "connection failed")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorKind.CONNECT, "connection closed by the receiver before it answered"
    if isinstance(exc, aiohttp.ClientOSError):
        return ErrorKind.CONNECT, _os_text(exc, "connection lost")
    if isinstance(exc, ssl.SSLError):
        return ErrorKind.TLS, _tls_message(exc)
    if isinstance(exc, OSError):
        return ErrorKind.CONNECT, _os_text(exc, "connection failed")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.PROTOCOL, _payload_text(exc.__cause__)
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorKind.PROTOCOL, short(exc.message) or "invalid response"
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return ErrorKind.PROTOCOL, short(f"invalid URL: {exc} (not http or https)")
    if isinstance(exc, aiohttp.InvalidURL):
        why = f" ({exc.description})" if exc.description else ""
        return ErrorKind.PROTOCOL, short(f"invalid URL: {exc.url}{why}")
    # Anything else reached the sender's boundary unexpectedly; record it without a traceback.
    name = type(exc).__name__
    return ErrorKind.PROTOCOL, short(f"{name}: {exc}") if short(str(exc)) else name


def _tls_message(exc: ssl.SSLError) -> str:
    """Return a one-line account of a failed TLS handshake."""
    # The C layer sets verify_message and reason; an SSLError built in Python has neither.
    verify_message = getattr(exc, "verify_message", None)
    if isinstance(verify_message, str) and verify_message:
        return short(f"certificate verify failed: {verify_message}")
    if isinstance(exc, ssl.SSLEOFError):
        return "TLS handshake failed: connection closed by peer"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return short(f"TLS handshake failed: {reason.lower().replace('_', ' ')}")
    return "TLS handshake failed"


def _payload_text(cause: BaseException | None) -> str:
    """Return a one-line account of a response body that broke off or could not be read."""
    if not isinstance(cause, HttpProcessingError):
        return "invalid response body"
    detail = short(cause.message).rstrip(".")
    detail = detail[:1].lower() + detail[1:]
    if isinstance(cause, ContentLengthError | TransferEncodingError):
        return short(f"response body cut short: {detail}")
    return short(f"invalid response body: {detail}")


def _os_text(exc: OSError, fallback: str) -> str:
    if exc.errno == errno.ECONNRESET:
        return "connection reset by peer"
    # asyncio's connect sets strerror to "Connect call failed (address)": the errno's own
    # text says what happened. getaddrinfo's negative codes have only their strerror.
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    if exc.strerror:
        return short(exc.strerror.lower())
    return short(str(exc)) or fallback
