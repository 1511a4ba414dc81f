"""Every line the worker logs, Dramatiq's included, is in the product's format; what needs
an operator is logged as a warning."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemons import Daemon, base_env, eventually, free_port, wait_serving
from tests.pipeline import Pipeline
from tests.receiver import Receiver, ok, status

TEXT_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.()-]+: ")


def worker_lines(db_url: str, redis_url: str, log_format: str, tmp_path: Path) -> list[str]:
    port = free_port()
    env = base_env(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        WEBHOOKS_LOG_FORMAT=log_format,
        WEBHOOKS_METRICS_PORT=str(port),
    )
    worker = Daemon(["worker", "--processes", "1", "--threads", "1"], env, tmp_path / "w.log")
    try:
        wait_serving(worker, port)
        deadline = time.monotonic() + 20
        while "ready for action" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
    finally:
        assert worker.stop() == 0, worker.output()
    lines = worker.output().splitlines()
    assert lines
    return lines


def test_json_logs_are_one_json_object_per_line_dramatiq_s_included(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    lines = worker_lines(db_url, redis_url, "json", tmp_path)
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line!r}\n" + "\n".join(lines))
    loggers = {r["logger"] for r in records}
    assert any(name.startswith("dramatiq") for name in loggers), loggers
    assert any(name.startswith("webhooks") for name in loggers), loggers
    assert any("ready for action" in r["message"] for r in records)


def test_text_logs_share_the_product_s_format(db_url: str, redis_url: str, tmp_path: Path) -> None:
    lines = worker_lines(db_url, redis_url, "text", tmp_path)
    odd = [line for line in lines if not TEXT_LINE.match(line)]
    assert odd == [], "\n".join(lines)
    assert any(" dramatiq." in line for line in lines)


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("delivery ")]


def test_a_delivery_that_goes_dead_is_a_warning_its_retries_are_not(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    p = make_pipeline(retry_schedule=(0, 0.2))
    p.endpoint(receiver.on("/down", status(500)))
    p.start_relay()
    p.start_worker()
    p.publish("invoice.paid", {})
    p.settle()

    def both() -> list[tuple[str, int]]:
        said = [(r.getMessage(), r.levelno) for r in outcome_lines(caplog)]
        assert len(said) == 2, said
        return said

    assert eventually(both) == [
        ("delivery retry", logging.INFO),
        ("delivery dead", logging.WARNING),
    ]
    dead = outcome_lines(caplog)[-1]
    assert dead.__dict__["reason"] == "attempts_exhausted"


def test_a_delivery_put_back_dead_without_an_attempt_is_a_warning(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    p = make_pipeline(max_delivery_age=60.0)
    p.endpoint(receiver.on("/ok", ok))
    p.start_relay()
    p.publish("invoice.paid", {})
    p.wait_until(lambda: p.value("select count(*) from webhooks.deliveries") == 1)
    p.conn.execute("update webhooks.deliveries set budget_started_at = now() - interval '1 hour'")
    p.start_worker()
    p.settle()

    def said() -> logging.LogRecord:
        (line,) = outcome_lines(caplog)
        return line

    line = eventually(said)
    assert (line.getMessage(), line.levelno) == ("delivery dead", logging.WARNING)
    assert line.__dict__["reason"] == "expired"
    assert receiver.to("/ok") == []


def test_an_attempt_whose_secret_cannot_be_opened_is_a_warning(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    p = make_pipeline(secret_key="a" * 40)
    p.endpoint(receiver.on("/ok", ok))
    # The workers were given another key than the one the secret was sealed with.
    p.settings = dataclasses.replace(p.settings, secret_key="b" * 40)
    p.start_relay()
    p.start_worker()
    p.publish("invoice.paid", {})

    def first() -> logging.LogRecord:
        lines = outcome_lines(caplog)
        assert lines
        return lines[0]

    line = eventually(first)
    assert line.levelno == logging.WARNING, line.getMessage()
    assert "WEBHOOKS_SECRET_KEY" in line.__dict__["error"]
    assert receiver.to("/ok") == []


def test_successes_are_counted_in_one_line_per_batch_and_logged_one_by_one_at_debug(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    p = make_pipeline()
    p.endpoint(receiver.on("/ok", ok))
    p.start_relay()
    p.start_worker()
    for n in range(5):
        p.publish("invoice.paid", {"n": n})
    p.settle()

    def counted() -> int:
        batches = [r for r in caplog.records if r.getMessage() == "recorded batch"]
        total = sum(r.__dict__["attempts"] for r in batches)
        assert total == 5, total
        assert sum(r.__dict__.get("succeed", 0) for r in batches) == 5
        return total

    eventually(counted)
    assert outcome_lines(caplog) == []  # no line per success at INFO

    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="webhooks")
    p.publish("invoice.paid", {"n": 5})
    p.settle()

    def one_line() -> logging.LogRecord:
        (line,) = outcome_lines(caplog)
        return line

    line = eventually(one_line)
    assert (line.getMessage(), line.levelno) == ("delivery succeed", logging.DEBUG)
    assert line.__dict__["status"] == 200 and line.__dict__["attempt"] == 1
