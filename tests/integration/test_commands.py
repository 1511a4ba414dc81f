"""The commands operators reach for: publish from a file, endpoint update, test and delete,
delivery retry and resend, tenant and time filters (issue 15). Driven as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.helpers import run_cli
from tests.integration.test_delivery import verify
from tests.pipeline import Pipeline
from tests.receiver import Receiver, status


def env_of(db_url: str, redis_url: str | None = None, **more: str) -> dict[str, str]:
    out = {"DATABASE_URL": db_url, **more}
    if redis_url is not None:
        out["REDIS_URL"] = redis_url
    return out


def value(db_url: str, sql: str, *params: object) -> object:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


# -- publish --data @FILE / - --------------------------------------------------------------


def test_publish_reads_a_payload_beyond_the_argument_limit_from_a_file(
    db_url: str, tmp_path: Path
) -> None:
    # ~200 KiB: more than one command-line argument can carry (128 KiB on Linux).
    payload = {"blob": "x" * 200_000}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload, indent=2))
    result = run_cli("publish", "big.event", "--data", f"@{path}", "--json", env=env_of(db_url))
    assert result.returncode == 0, result.stderr
    event_id = json.loads(result.stdout)["id"]
    stored = value(db_url, "select payload from webhooks.outbox where id = %s", event_id)
    assert stored == payload


def test_publish_reads_the_payload_from_stdin(db_url: str) -> None:
    payload = {"from": "stdin", "blob": "y" * 150_000}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "publish", "a.b", "--data", "-"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env={**_clean_env(), "DATABASE_URL": db_url},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    assert value(db_url, "select payload from webhooks.outbox where id = %s", event_id) == payload


def test_publish_from_a_file_too_large_or_unreadable_is_one_line(
    db_url: str, tmp_path: Path
) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "z" * 3000}))
    too_large = run_cli(
        "publish",
        "a.b",
        "--data",
        f"@{big}",
        env=env_of(db_url, WEBHOOKS_MAX_PAYLOAD_BYTES="1000"),
    )
    assert too_large.returncode == 2
    assert len(too_large.stderr.strip().splitlines()) == 1, too_large.stderr
    assert "1000" in too_large.stderr
    missing = run_cli("publish", "a.b", "--data", f"@{tmp_path}/nope.json", env=env_of(db_url))
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()
    assert f"cannot read '{tmp_path}/nope.json': No such file or directory" in line
    # A negative number is JSON, not stdin.
    assert run_cli("publish", "a.b", "--data", "-1", env=env_of(db_url)).returncode == 0
    assert value(db_url, "select count(*) from webhooks.outbox") == 1


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WEBHOOKS_") and k not in ("DATABASE_URL", "REDIS_URL")
    }


# -- deliveries retry / resend -------------------------------------------------------------


def penv(p: Pipeline) -> dict[str, str]:
    return {"DATABASE_URL": p.settings.require_database_url(), "REDIS_URL": p.settings.redis_url}


def one_delivery(p: Pipeline) -> int:
    return int(p.value("select id from webhooks.deliveries"))


def test_retry_attempts_a_waiting_delivery_now_and_spends_one_attempt(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    p = make_pipeline(retry_schedule=(0, 3600, 3600))  # the second attempt is an hour away
    p.endpoint(receiver.on("/down", status(500)))
    event = p.publish("a.b", {})
    p.start_relay()
    p.start_worker()
    receiver.wait_for("/down", 1)
    p.wait_until(lambda: p.value("select attempts from webhooks.deliveries") == 1)
    delivery = one_delivery(p)
    p.stop_workers()

    # Retried twice before any worker runs: only the last message may attempt it.
    for _ in range(2):
        result = run_cli("deliveries", "retry", str(delivery), "--json", env=penv(p))
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["previous_status"] == "pending"
    p.start_worker()
    got = receiver.wait_for("/down", 2)
    time.sleep(1.5)  # room for a second, forbidden attempt
    assert len(receiver.to("/down")) == 2
    assert {r.headers["webhook-id"] for r in got} == {event}
    row = p.rows("select status, attempts, spent from webhooks.deliveries")[0]
    assert row == {"status": "pending", "attempts": 2, "spent": 2}


def test_retry_refuses_a_finished_delivery_pointing_to_resend_or_replay(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    p = pipeline
    p.endpoint(receiver.url("/ok"))
    p.publish("a.b", {})
    p.start_relay()
    p.start_worker()
    p.settle()
    delivery = one_delivery(p)
    done = run_cli("deliveries", "retry", str(delivery), env=penv(p))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: delivery {delivery} already succeeded: "
        f"`webhooks deliveries resend {delivery}` sends it again"
    ]
    p.conn.execute("update webhooks.deliveries set status = 'dead', dead_reason = 'expired'")
    dead = run_cli("deliveries", "retry", str(delivery), env=penv(p))
    assert dead.returncode == 1 and f"webhooks dlq replay --id {delivery}" in dead.stderr
    assert len(dead.stderr.strip().splitlines()) == 1
    missing = run_cli("deliveries", "retry", "424242", env=penv(p))
    assert missing.returncode == 1 and "no delivery with id 424242" in missing.stderr
    other = run_cli("deliveries", "retry", str(delivery), "--tenant", "acme", env=penv(p))
    assert other.returncode == 1 and "no delivery with id" in other.stderr


def test_resend_sends_a_succeeded_delivery_again_with_the_same_webhook_id(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    p = pipeline
    _, secret = p.endpoint(receiver.url("/ok"))
    event = p.publish("a.b", {"n": 1})
    p.start_relay()
    p.start_worker()
    p.settle()
    delivery = one_delivery(p)
    result = run_cli("deliveries", "resend", str(delivery), env=penv(p))
    assert result.returncode == 0, result.stderr
    assert f"with webhook-id {event}" in result.stdout
    got = receiver.wait_for("/ok", 2)
    p.settle()
    assert [r.headers["webhook-id"] for r in got] == [event, event]
    verify(secret, got[1])
    triggers = [r["trigger"] for r in p.rows("select trigger from webhooks.attempts order by id")]
    assert triggers == ["scheduled", "resend"]
    assert p.value("select status from webhooks.deliveries") == "succeeded"
    p.stop_workers()
    pending = p.publish("c.d", {})
    p.wait_until(lambda: p.value("select count(*) from webhooks.deliveries") == 2)
    second = int(p.value("select id from webhooks.deliveries where event_id = %s", pending))
    refused = run_cli("deliveries", "resend", str(second), env=penv(p))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: delivery {second} is still pending: "
        f"`webhooks deliveries retry {second}` attempts it now"
    ]


def test_resend_of_a_dead_delivery_replays_its_dead_letter(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    p = pipeline
    ep, _ = p.endpoint(receiver.url("/fixed"))
    event = p.publish("a.b", {})
    p.start_relay()
    p.wait_until(lambda: p.value("select count(*) from webhooks.deliveries") == 1)
    p.conn.execute(
        "update webhooks.deliveries set status = 'dead', dead_reason = 'attempts_exhausted',"
        " message_id = null"
    )
    delivery = one_delivery(p)
    p.registry.disable(ep, "testing")
    disabled = run_cli("deliveries", "resend", str(delivery), env=penv(p))
    assert disabled.returncode == 1 and f"webhooks endpoint enable {ep}" in disabled.stderr
    p.registry.enable(ep)
    result = run_cli("deliveries", "resend", str(delivery), "--json", env=penv(p))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["previous_status"] == "dead"
    p.start_worker()
    got = receiver.wait_for("/fixed", 1)
    p.settle()
    assert got[0].headers["webhook-id"] == event
    letter = p.rows("select replayed_at, replay_count, replays from webhooks.dead_letters")[0]
    assert letter["replayed_at"] is not None and letter["replay_count"] == 1
    assert letter["replays"][0]["trigger"] == "resend" and letter["replays"][0]["by"]
    assert p.value("select trigger from webhooks.attempts") == "resend"
    assert run_cli("check", env=penv(p)).returncode == 0
