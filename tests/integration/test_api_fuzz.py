"""schemathesis against `webhooks api`, with every check it has (`st run --checks all`).

The run CI makes: its coverage, fuzzing and stateful phases on a small budget, valid and
invalid requests, against a real server. No answer may be a 5xx or off the document, and the
document must be as strict as the server: a request it allows is not refused (422), one it
forbids is not accepted, a 405 names every method of its path in ``Allow``.
`WEBHOOKS_FUZZ_EXAMPLES` raises the budget per operation, `WEBHOOKS_FUZZ_SEED` changes the
seed (a failure names its seed, to replay it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.daemons import Daemon, base_env, free_port, wait_serving
from worker.api.openapi import document
from worker.ops import apikeys

EXAMPLES = os.environ.get("WEBHOOKS_FUZZ_EXAMPLES", "8")
SEED = os.environ.get("WEBHOOKS_FUZZ_SEED", "1")
#: Every operation of the API: endpoints (5 + rotate-secret, enable, disable, test,
#: test-filter), events (3), deliveries (4), dead letters (2), status, portal links and
#: event types (6).
OPERATIONS = 28


def test_schemathesis_with_every_check_finds_nothing(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        key = apikeys.create(conn, "fuzz", tenant_id=None)[1]
    documented = [(m, p) for p, operations in document()["paths"].items() for m in operations]
    assert len(documented) == OPERATIONS, documented
    env = base_env(
        DATABASE_URL=db_url, REDIS_URL=redis_url, WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8"
    )
    port = free_port()
    api = Daemon(["api", "--port", str(port)], env, tmp_path / "api.log")
    report = tmp_path / "report.json"
    try:
        wait_serving(api, port)
        run = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli", "run"),
                f"http://127.0.0.1:{port}/openapi.json",
                *("--checks", "all"),
                # One worker: CPython 3.11.7's ast.parse, which hypothesis calls to describe a
                # filter, fails under threads ("AST constructor recursion depth mismatch").
                *("--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1"),
                *("--generation-database", "none", "--no-color"),
                *("-H", f"Authorization: Bearer {key}"),
                *("--report", "json", "--report-json-path", str(report)),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=900,
        )
    finally:
        api.stop()
    tail = run.stdout[-20000:] + run.stderr[-2000:]
    assert report.exists(), tail
    result = json.loads(report.read_text())
    assert result["failures"] == [] and result["errors"] == [], tail
    assert run.returncode == 0, tail
    operations = result["operations"]
    assert operations["tested"] == operations["total"] == OPERATIONS, operations
    assert operations["errored"] == operations["skipped"] == 0, operations
    for phase in ("coverage", "fuzzing", "stateful"):
        assert result["phases"][phase]["status"] == "success", result["phases"]
    # A pattern schemathesis cannot read would be left out of what it generates.
    assert result["warnings"]["unsupported_regex"] == [], result["warnings"]
    assert "Traceback" not in api.output()
