"""Every line the worker logs, Dramatiq's included, is in the product's format."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.daemons import Daemon, base_env, free_port, wait_serving

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
