"""The bench's receiver: a cheap tally of every request, served in a process of its own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import random
import signal
from multiprocessing.connection import Connection
from typing import Any

from worker.bench.options import VERIFY_EVERY, BenchError
from worker.dev.server import HttpConnection, InFlight, header


def hmac_signature(key: bytes, msg_id: bytes, stamp: bytes, body: bytes) -> bytes:
    """Return ``v1,<base64 HMAC-SHA256>``, computed independently of `worker.policy.signing`."""
    digest = hmac.new(key, msg_id + b"." + stamp + b"." + body, hashlib.sha256).digest()
    return b"v1," + base64.b64encode(digest)


def signing_key(secret: str) -> bytes:
    """Return the key bytes of a ``whsec_`` secret."""
    text = secret.removeprefix("whsec_")
    return base64.b64decode(text + "=" * (-len(text) % 4))


_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_FAIL = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"


class Tally:
    """Count every request with its arrival time; verify a sample; answer 200 or 500.

    Paths ``/e/<n>`` are the pipeline's endpoints (``fail_rate`` applies), ``/c/<n>`` the
    ceiling's.
    """

    def __init__(self, fail_rate: float, verify_every: int = VERIFY_EVERY) -> None:
        self.fail_rate = fail_rate
        self.verify_every = verify_every
        self.keys: dict[bytes, bytes] = {}
        self.random = random.Random(7).random
        self.checked = 0
        self.bad = 0
        self.problems: list[str] = []
        self._seen: set[bytes] = set()
        self.clear()

    def clear(self) -> None:
        """Forget the requests counted so far (not the signature checks)."""
        self.times: list[float] = []
        self.paths: list[bytes] = []
        self.ids: list[bytes] = []
        self.codes: list[int] = []
        self.ok: set[tuple[bytes, bytes]] = set()
        self.last_new = 0.0

    def handle(self, head: bytes, body: bytes, now: float) -> bytes:
        """Record one request; return the response to write."""
        lower = head.lower()
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        parts = line.split(b" ")
        path = parts[1] if len(parts) > 2 else b""
        event_id = header(head, lower, b"webhook-id") or b""
        self.times.append(now)
        self.paths.append(path)
        self.ids.append(event_id)
        if path not in self._seen or len(self.times) % self.verify_every == 0:
            self._seen.add(path)
            self._verify(path, head, lower, event_id, body, now)
        if self.fail_rate and path.startswith(b"/e/") and self.random() < self.fail_rate:
            self.codes.append(500)
            return _FAIL
        self.codes.append(200)
        pair = (event_id, path)
        if pair not in self.ok:
            self.ok.add(pair)
            self.last_new = now
        return _OK

    def _verify(
        self, path: bytes, head: bytes, lower: bytes, event_id: bytes, body: bytes, now: float
    ) -> None:
        key = self.keys.get(path)
        if key is None:
            return
        self.checked += 1
        stamp = header(head, lower, b"webhook-timestamp") or b"0"
        given = (header(head, lower, b"webhook-signature") or b"").split(b" ")
        problem = None
        if hmac_signature(key, event_id, stamp, body) not in given:
            problem = "signature does not verify"
        # The ceiling's requests are all signed before it starts, so a long one outlives
        # the 5-minute tolerance; only the pipeline's must be fresh.
        elif path.startswith(b"/e/") and abs(now - int(stamp)) > 300:
            problem = "timestamp outside tolerance"
        else:
            try:
                parsed = json.loads(body)
                if set(parsed) != {"type", "timestamp", "data"}:
                    problem = f"unexpected body fields {sorted(parsed)}"
            except ValueError:
                problem = "body is not JSON"
        if problem:
            self.bad += 1
            if len(self.problems) < 10:
                self.problems.append(f"{path.decode()} {event_id.decode()}: {problem}")

    def summary(self) -> dict[str, Any]:
        """Return counts of what arrived since the last `clear`."""
        return {
            "requests": len(self.times),
            "ok_pairs": len(self.ok),
            "failed": self.codes.count(500),
            "last_new": self.last_new,
            "checked": self.checked,
            "bad": self.bad,
            "problems": list(self.problems),
        }


async def _serve(conn: Connection, fail_rate: float, delay: float) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally(fail_rate)
    in_flight = InFlight(loop.time())
    server = await loop.create_server(
        lambda: HttpConnection(tally.handle, in_flight, delay),
        "127.0.0.1",
        0,
        backlog=1024,
        reuse_address=True,
    )
    conn.send(server.sockets[0].getsockname()[1])
    done: asyncio.Future[None] = loop.create_future()

    def command() -> None:
        try:
            name, *args = conn.recv()
        except (EOFError, OSError):
            name, args = "stop", []
        if name == "keys":
            tally.keys.update({p.encode(): signing_key(s) for p, s in args[0].items()})
            conn.send(True)
        elif name == "summary":
            conn.send({**tally.summary(), **in_flight.summary(loop.time())})
        elif name == "take":
            records = (tally.times, tally.paths, tally.ids, tally.codes)
            summary = {**tally.summary(), **in_flight.summary(loop.time())}
            tally.clear()
            in_flight.restart(loop.time())
            conn.send((summary, records))
        elif name == "stop" and not done.done():
            done.set_result(None)

    loop.add_reader(conn.fileno(), command)
    await done
    server.close()


def _receiver_main(
    conn: Connection, fail_rate: float, delay: float
) -> None:  # pragma: no cover - child
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    asyncio.run(_serve(conn, fail_rate, delay))


class ReceiverProcess:
    """Run the receiver in its own process and talk to it over a pipe."""

    def __init__(self, fail_rate: float, delay: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_receiver_main,
            args=(child, fail_rate, delay),
            name="bench-receiver",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.port = int(self._call_result(30.0))

    def _call_result(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise BenchError("the receiver did not answer")
        return self._conn.recv()

    def url(self, path: str) -> str:
        """Return the URL of a path on the receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def keys(self, secrets_by_path: dict[str, str]) -> None:
        """Tell the receiver the secret of each path, for the sampled signature checks."""
        self._conn.send(("keys", secrets_by_path))
        self._call_result(30.0)

    def summary(self) -> dict[str, Any]:
        """Return counts (and the requests in flight) since the last `take`."""
        self._conn.send(("summary",))
        result: dict[str, Any] = self._call_result(30.0)
        return result

    def take(
        self,
    ) -> tuple[dict[str, Any], tuple[list[float], list[bytes], list[bytes], list[int]]]:
        """Return the counts and every request record since the last `take`, and forget them."""
        self._conn.send(("take",))
        result: tuple[dict[str, Any], tuple[list[float], list[bytes], list[bytes], list[int]]] = (
            self._call_result(120.0)
        )
        return result

    def stop(self) -> None:
        """Stop the process."""
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(("stop",))
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._conn.close()
