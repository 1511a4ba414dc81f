"""Log lines cannot be forged: whatever comes from outside stays inside its own one line.

A request path, a header, a receiver's answer or an exception message may hold line breaks
and terminal escapes. The text format escapes them (one record, one physical line); the
JSON format stays one valid object per line. Checked on the formatters with tables and
generated text, and on a real `webhooks api` answering hostile paths with no key.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import unicodedata
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.daemons import eventually, free_port
from worker.observe import logs
from worker.observe.logs import IN_MESSAGE, JsonFormatter, TextFormatter

ROOT = Path(__file__).resolve().parents[2]
TEXT_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.()-]+: ")
#: Characters that end a line or change what a terminal shows: none may reach a log raw.
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
FORGED = "07:53:00.000 INFO    webhooks.api.access: GET /v1/admin 200"

HOSTILE = [
    ("newline", f"x\n{FORGED}"),
    ("carriage return", f"x\r{FORGED}"),
    ("crlf", "x\r\nSet-Cookie: a=b"),
    ("escape", "\x1b[2J\x1b[31mred\x1b[0m"),
    ("bell and backspace", "ab\x08\x08\x07"),
    ("nul", "a\x00b"),
    ("del", "a\x7fb"),
    ("c1 next line", "a\x85b"),
    ("c1 csi", "a\x9b31mb"),
    ("line separator", f"a\u2028{FORGED}"),
    ("paragraph separator", f"a\u2029{FORGED}"),
    ("vertical tab and form feed", "a\x0bb\x0cc"),
    ("file and group separators", "a\x1cb\x1dc\x1ed"),
    ("right-to-left override", "evil\u202etxt.exe"),
    ("zero width space", "adm\u200bin"),
    ("lone surrogate", "a\udcffb"),
    ("tab", "a\tb"),
]


def unsafe(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in UNSAFE]


def record(msg: str = "%s", *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("webhooks.test", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def failed(message: str) -> logging.LogRecord:
    try:
        raise ValueError(message)
    except ValueError:
        rec = logging.LogRecord(
            "webhooks.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    return rec


def assert_one_safe_line(line: str) -> None:
    assert len(line.splitlines()) == 1, line
    assert unsafe(line) == [], line


# -- the text formatter ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), HOSTILE, ids=[n for n, _ in HOSTILE])
def test_text_escapes_hostile_text_in_the_message_and_in_every_field(name: str, text: str) -> None:
    line = TextFormatter().format(record("GET %s %d", text, 404, path=text, client=text))
    assert_one_safe_line(line)
    assert TEXT_LINE.match(line), line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("\x1b[31m", "\\x1b[31m"),
        ("a\x00b", "a\\x00b"),
        ("a\x7fb", "a\\x7fb"),
        ("a\x85b", "a\\x85b"),
        ("a\u2028b", "a\\u2028b"),
        ("a\u202eb", "a\\u202eb"),
        ("a\U000e0041b", "a\\U000e0041b"),
        ("café ☕ 東京", "café ☕ 東京"),
    ],
)
def test_text_writes_control_characters_as_python_escapes(text: str, shown: str) -> None:
    assert logs.escape(text) == shown
    line = TextFormatter().format(record("m %s", text))
    assert line.endswith(": m " + shown)


def test_a_field_value_cannot_pass_for_another_field() -> None:
    line = TextFormatter().format(
        record("delivery retry", error='refused status=200 "x"', url="http://h/a b", empty="")
    )
    assert line.endswith(
        'delivery retry error="refused status=200 \\"x\\"" url="http://h/a b" empty=""'
    ), line


def test_text_says_the_fields_its_message_shows_once_and_json_keeps_them() -> None:
    rec = record(
        "%s %s %d",
        "GET",
        "/v1/status",
        200,
        method="GET",
        path="/v1/status",
        status=200,
        duration_ms=1.5,
        **{IN_MESSAGE: ("method", "path", "status")},
    )
    line = TextFormatter().format(rec)
    assert line.endswith("webhooks.test: GET /v1/status 200 duration_ms=1.5"), line
    obj = json.loads(JsonFormatter().format(rec))
    assert (obj["method"], obj["path"], obj["status"]) == ("GET", "/v1/status", 200)
    assert IN_MESSAGE not in obj


@pytest.mark.parametrize(("name", "text"), HOSTILE, ids=[n for n, _ in HOSTILE])
def test_an_exception_is_one_line_what_failed_first_then_its_traceback(
    name: str, text: str
) -> None:
    line = TextFormatter().format(failed(text))
    assert_one_safe_line(line)
    assert " failed exception=" in line
    head, _, trace = line.partition(" traceback=")
    assert "ValueError: " in head
    assert trace.startswith('"Traceback (most recent call last):\\n  File ')


def test_a_chained_exception_keeps_its_cause_on_the_same_line() -> None:
    try:
        try:
            raise KeyError("inner\nforged")
        except KeyError as exc:
            raise RuntimeError("outer") from exc
    except RuntimeError:
        rec = logging.LogRecord("webhooks.t", logging.ERROR, "f", 1, "boom", (), sys.exc_info())
    line = TextFormatter().format(rec)
    assert_one_safe_line(line)
    assert 'exception="RuntimeError: outer"' in line
    assert "KeyError: 'inner\\\\nforged'" in line and "direct cause" in line


def test_a_message_ending_in_line_breaks_loses_them() -> None:
    line = TextFormatter().format(record("connection failed\n\tIs the server running?\n"))
    assert line.endswith(": connection failed\\n\\tIs the server running?"), line


# -- the JSON formatter ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), HOSTILE, ids=[n for n, _ in HOSTILE])
def test_json_is_one_ascii_object_per_line_that_gives_the_text_back(name: str, text: str) -> None:
    line = JsonFormatter().format(record("GET %s", text, path=text))
    assert line.isascii() and len(line.splitlines()) == 1, line
    obj = json.loads(line)
    assert (obj["message"], obj["path"]) == (f"GET {text}", text)


def test_json_writes_numbers_it_cannot_hold_as_strings() -> None:
    line = JsonFormatter().format(record("x", a=float("nan"), b=float("inf"), c=1.5, d=[1]))
    obj = json.loads(line, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert (obj["a"], obj["b"], obj["c"], obj["d"]) == ("nan", "inf", 1.5, [1])


def test_json_names_the_exception_and_keeps_the_traceback() -> None:
    obj = json.loads(JsonFormatter().format(failed("bad\nthing")))
    assert obj["exception"] == "ValueError: bad\nthing"
    assert obj["traceback"].startswith("Traceback (most recent call last):\n")


# -- properties --------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from(["path", "error", "url", "client", "detail"])


@settings(max_examples=300, deadline=None)
@given(message=st.text(), fields=st.dictionaries(FIELD_NAMES, st.text(), max_size=4))
def test_any_text_makes_one_line_with_no_raw_control_character(
    message: str, fields: dict[str, str]
) -> None:
    text = TextFormatter().format(record("%s", message, **fields))
    assert_one_safe_line(text)
    as_json = JsonFormatter().format(record("%s", message, **fields))
    assert as_json.isascii() and len(as_json.splitlines()) == 1
    obj = json.loads(as_json)
    assert obj["message"] == message and all(obj[k] == v for k, v in fields.items())


@settings(max_examples=100, deadline=None)
@given(message=st.text())
def test_any_exception_message_makes_one_line(message: str) -> None:
    assert_one_safe_line(TextFormatter().format(failed(message)))
    assert len(JsonFormatter().format(failed(message)).splitlines()) == 1


# -- the process's configuration: warnings and libraries' lines --------------------------


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """Configure the process's logging as a daemon does, into a buffer in place of stderr;
    put everything back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, warnings.showwarning
    named = {n: logging.getLogger(n) for n in ("webhooks", "dramatiq", "httpx")}
    kept = {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in named.items()}
    logs.configure("text")
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    out = io.StringIO()
    handler.setStream(out)
    try:
        yield out
    finally:
        root.handlers[:], level, warnings.showwarning = saved
        root.setLevel(level)
        for n, (handlers, lvl, propagate) in kept.items():
            named[n].handlers[:] = handlers
            named[n].setLevel(lvl)
            named[n].propagate = propagate


def test_a_python_warning_is_one_line_naming_where_it_came_from(configured: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old\nway", DeprecationWarning, stacklevel=1)
    lines = configured.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert " py.warnings: DeprecationWarning: old\\nway source=" in lines[0], lines
    assert "test_log_injection.py:" in lines[0]


def test_a_library_s_two_line_warning_is_one_line(configured: io.StringIO) -> None:
    logging.getLogger("psycopg.pool").warning(
        "error connecting in %r: %s", "pool-1", "connection failed\n\tIs the server running?\n"
    )
    lines = configured.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith("connection failed\\n\\tIs the server running?"), lines


# -- a real `webhooks api` ---------------------------------------------------------------

#: Paths sent with no key, each with a marker; percent-encoded as a client sends them.
PATHS = {
    "mk0": "/v1/events/mk0%0A07:53:00.000%20INFO%20%20%20%20webhooks.api.access:"
    "%20GET%20/v1/admin%20200",
    "mk1": "/v1/events/mk1%0D%0A07:53:00.000%20INFO%20webhooks.api.access:%20forged",
    "mk2": "/v1/events/mk2%1B%5B2J%1B%5B31mred",
    "mk3": "/v1/events/mk3%E2%80%A807:53:00.000%20INFO%20forged",
    "mk4": "/v1/events/mk4%C2%85%00%7F%E2%80%AEevil",
    "mk5": "/nowhere/mk5%0A%0A%0A",
}


class Api:
    """`webhooks api` in a subprocess, its stderr in a file."""

    def __init__(self, db_url: str, redis_url: str, log_format: str, tmp_path: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
        env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, WEBHOOKS_LOG_FORMAT=log_format)
        self.err = tmp_path / f"api-{log_format}.err"
        with self.err.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "api", "--port", str(self.port)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        eventually(self.up, timeout=60)

    def up(self) -> None:
        assert self.proc.poll() is None, self.err.read_text()
        try:
            status = httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code
        except httpx.TransportError as exc:
            raise AssertionError(f"webhooks api not listening: {exc}") from None
        assert status == 200

    def raw_get(self, target: str) -> bytes:
        """Send a GET with this exact request target; return the status line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(
                f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer.split(b"\r\n", 1)[0]

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == 0
        return self.err.read_bytes()


@pytest.fixture
def api_lines(
    request: pytest.FixtureRequest, db_url: str, redis_url: str, tmp_path: Path
) -> tuple[list[str], dict[str, bytes]]:
    """Send every hostile path to a fresh `webhooks api` in the format asked for; return
    its stderr's lines and each path's status line."""
    api = Api(db_url, redis_url, request.param, tmp_path)
    try:
        answers = {marker: api.raw_get(path) for marker, path in PATHS.items()}
    finally:
        err = api.stop()
    text = err.decode("utf-8")  # the log is text: undecodable bytes would fail here
    assert text.endswith("\n")
    return text[:-1].split("\n"), answers


@pytest.mark.parametrize("api_lines", ["text"], indirect=True)
def test_the_api_writes_one_text_line_per_hostile_request(
    api_lines: tuple[list[str], dict[str, bytes]],
) -> None:
    lines, answers = api_lines
    for line in lines:
        assert TEXT_LINE.match(line), "\n".join(lines)
        assert unsafe(line) == [], line
    assert not any(line.startswith("07:53:00.000") for line in lines), "\n".join(lines)
    for marker, status in answers.items():
        assert status.startswith(b"HTTP/1.1 40"), status
        mine = [line for line in lines if marker in line]
        assert len(mine) == 1, (marker, mine)
        assert " INFO    webhooks.api.access: GET /" in mine[0], mine
        # method, path and status are read once, in the message
        assert "method=" not in mine[0] and "path=" not in mine[0] and "status=" not in mine[0]
    # uvicorn's own lines are the API's
    assert any(" webhooks.api.server: " in line for line in lines), "\n".join(lines)
    assert not any("uvicorn" in line.split(": ", 1)[0] for line in lines), "\n".join(lines)


@pytest.mark.parametrize("api_lines", ["json"], indirect=True)
def test_the_api_writes_one_json_object_per_hostile_request(
    api_lines: tuple[list[str], dict[str, bytes]],
) -> None:
    lines, answers = api_lines
    records = []
    for line in lines:
        assert line.isascii(), line
        records.append(json.loads(line))
    for marker in answers:
        mine = [r for r in records if marker in json.dumps(r)]
        assert len(mine) == 1, (marker, mine)
        assert mine[0]["logger"] == "webhooks.api.access"
        assert mine[0]["method"] == "GET" and mine[0]["status"] in (401, 404)
        assert marker in mine[0]["path"]
