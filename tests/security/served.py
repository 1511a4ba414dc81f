"""`webhooks api` as a subprocess on a free port, and a raw-socket client to attack it with.

The attacks speak HTTP/1.1 byte by byte (a lying Content-Length, a chunked body generated as
it is sent, headers one byte at a time), which no well-behaved client library would send.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemons import Daemon, base_env, free_port, wait_serving


@dataclass
class Served:
    """A running `webhooks api`: its port and process."""

    port: int
    daemon: Daemon

    @property
    def pid(self) -> int:
        return self.daemon.proc.pid

    def rss_kib(self) -> int:
        """Return the server process's resident memory (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")


@contextmanager
def api_process(tmp_path: Path, **settings: str) -> Iterator[Served]:
    """Run `webhooks api` with ``settings`` (environment variables) until the block ends."""
    port = free_port()
    daemon = Daemon(["api", "--port", str(port)], base_env(**settings), tmp_path / "api.log")
    try:
        wait_serving(daemon, port)
        yield Served(port, daemon)
    finally:
        daemon.stop()


@dataclass
class Peak:
    """The highest VmRSS of a process seen by a sampling thread, until `stop`."""

    served: Served
    kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.kib = self.served.rss_kib()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.kib = max(self.kib, self.served.rss_kib())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.kib


def read_answer(sock: socket.socket) -> bytes:
    """Read what the server sent until it closes the connection or a whole answer is in."""
    got = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return got
        if not data:
            return got
        got += data
        head, sep, body = got.partition(b"\r\n\r\n")
        if sep:
            length = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                return got


def status_of(answer: bytes) -> int:
    """Return the status code of a raw HTTP answer (0 when there is none)."""
    if not answer.startswith(b"HTTP/1.1 "):
        return 0
    return int(answer.split(b" ", 2)[1])


@dataclass
class Streamed:
    """What a streamed request got: the server's answer and how much of the body was sent."""

    answer: bytes
    sent: int

    @property
    def status(self) -> int:
        return status_of(self.answer)


def stream_chunked(port: int, head: bytes, total: int, chunk: int = 65536) -> Streamed:
    """Send ``head`` then a chunked body of ``total`` bytes, made as it goes, until answered.

    Stops sending as soon as the server answers or closes; returns what it answered.
    """
    piece = b"%x\r\n" % chunk + b"[" * chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head)
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(piece)
                sent += chunk
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return Streamed(read_answer(sock), sent)


def request_head(
    path: str, *, headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    """Return the request line and headers of a request, ending with the blank line."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
