"""The commands operators reach for: publish from a file, endpoint update, test and delete,
delivery retry and resend, tenant and time filters. Driven as a user would."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

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


def test_publishing_the_same_idempotency_key_again_says_so(db_url: str) -> None:
    args = ("publish", "order.paid", "--data", "{}", "--idempotency-key", "order-9")
    first = run_cli(*args, env=env_of(db_url))
    assert first.returncode == 0, first.stderr
    event_id = first.stdout.strip()
    again = run_cli(*args, env=env_of(db_url))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"already published as {event_id} (same idempotency key)"
    as_json = json.loads(run_cli(*args, "--json", env=env_of(db_url)).stdout)
    assert as_json == {"id": event_id, "repeated": True}
    assert value(db_url, "select count(*) from webhooks.outbox") == 1


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
    return {
        "DATABASE_URL": p.settings.require_database_url(),
        "REDIS_URL": p.settings.redis_url,
        # The test receiver listens on loopback.
        "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    }


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


# -- endpoint update -------------------------------------------------------------------------


def test_endpoint_update_changes_only_what_is_given(pipeline: Pipeline, receiver: Receiver) -> None:
    p = pipeline
    ep, secret = p.endpoint(
        receiver.url("/old"),
        event_types=["a.b"],
        headers={"X-Team": "one"},
        rate_limit=5,
        description="first",
    )
    moved = run_cli("endpoint", "update", ep, "--url", receiver.url("/new"), "--json", env=penv(p))
    assert moved.returncode == 0, moved.stderr
    shown = json.loads(moved.stdout)
    assert shown["url"] == receiver.url("/new")
    # Headers kept, not given: redacted, so an update is no way to read them.
    assert (shown["event_types"], shown["headers"], shown["rate_limit"]) == (
        ["a.b"],
        {"X-Team": "(redacted)"},
        5,
    )
    assert shown["description"] == "first" and shown["secrets"] == 1

    replaced = run_cli(
        "endpoint", "update", ep, "--event-type", "c.d", "--event-type", "e.f",
        "--header", "X-Other: two", "--description", "second", "--json", env=penv(p),
    )  # fmt: skip
    shown = json.loads(replaced.stdout)
    assert shown["event_types"] == ["c.d", "e.f"] and shown["headers"] == {"X-Other": "two"}
    assert shown["rate_limit"] == 5 and shown["description"] == "second"

    cleared = run_cli(
        "endpoint", "update", ep, "--all-event-types", "--clear-headers", "--no-rate-limit",
        env=penv(p),
    )  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    assert re.search(r"^event types:\s+all$", cleared.stdout, re.MULTILINE)
    assert re.search(r"^rate limit:\s+-$", cleared.stdout, re.MULTILINE)
    got = p.registry.get(ep)
    assert (got.event_types, got.headers, got.rate_limit) == (None, {}, None)

    # The change takes effect: the next event goes to the new URL, signed as before.
    p.start_relay()
    p.start_worker()
    p.publish("x.y", {})
    verify(secret, receiver.wait_for("/new", 1)[0])
    p.settle()
    assert receiver.to("/old") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x"], "error: URL must use http or https"),
        (["--header", "webhook-id: 1"], "cannot be set"),
        (["--event-type", "a.b", "--all-event-types"], "cannot be combined"),
        (["--rate-limit", "3", "--no-rate-limit"], "cannot be combined"),
        ([], "nothing to update"),
    ],
)
def test_endpoint_update_refuses_bad_input_before_writing(
    pipeline: Pipeline, args: list[str], message: str
) -> None:
    p = pipeline
    ep, _ = p.endpoint("http://127.0.0.1:9/x")
    before = p.registry.get(ep)
    result = run_cli("endpoint", "update", ep, *args, env=penv(p))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert p.registry.get(ep) == before
    other = run_cli("endpoint", "update", ep, "--description", "x", "--tenant", "acme", env=penv(p))
    assert other.returncode == 1 and f"no endpoint with id {ep}" in other.stderr


# -- endpoint delete -------------------------------------------------------------------------


def dead_and_pending(p: Pipeline) -> str:
    """An endpoint with two deliveries: one pending, one dead (with its dead letter)."""
    ep, _ = p.endpoint("http://127.0.0.1:9/x")
    p.publish("a.b", {})
    p.publish("a.b", {})
    relay = p.start_relay()
    p.wait_until(lambda: p.value("select count(*) from webhooks.deliveries") == 2)
    relay.stop()
    p.conn.execute(
        "update webhooks.deliveries set status = 'dead', dead_reason = 'expired'"
        " where id = (select min(id) from webhooks.deliveries)"
    )
    return ep


def test_endpoint_delete_without_a_terminal_needs_yes(pipeline: Pipeline) -> None:
    p = pipeline
    ep = dead_and_pending(p)
    refused = run_cli("endpoint", "delete", ep, env=penv(p))
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "pass --yes" in line
    assert p.value("select count(*) from webhooks.endpoints") == 1

    done = run_cli("endpoint", "delete", ep, "--yes", env=penv(p))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"deleted {ep} with 2 deliveries (1 pending) and 1 dead letter")
    assert p.value("select count(*) from webhooks.deliveries") == 0


def test_endpoint_delete_on_a_terminal_says_what_goes_and_asks(pipeline: Pipeline) -> None:
    p = pipeline
    ep = dead_and_pending(p)
    no = on_terminal(["endpoint", "delete", ep], "n\n", penv(p))
    assert no.returncode == 1
    assert "has 2 deliveries (1 pending) and 1 dead letter" in no.output
    assert "not deleted" in no.output
    assert p.value("select count(*) from webhooks.endpoints") == 1
    yes = on_terminal(["endpoint", "delete", ep, "--json"], "y\n", penv(p))
    assert yes.returncode == 0, yes.output
    assert p.value("select count(*) from webhooks.endpoints") == 0
    assert '"dead_letters": 1' in yes.output


@dataclass
class Session:
    returncode: int
    output: str


def on_terminal(args: list[str], answer: str, env: dict[str, str]) -> Session:
    """Run the CLI with a pseudo-terminal as its stdin and stderr; type ``answer``."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**_clean_env(), **env},
    )
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(leader, answer.encode())
                answered = True
        elif proc.poll() is not None:
            break
    stdout, _ = proc.communicate(timeout=30)
    os.close(leader)
    return Session(proc.returncode, output.decode(errors="replace") + stdout.decode())


# -- status --tenant, deliveries list --event-type / --since ---------------------------------


def test_status_and_deliveries_list_narrow_to_a_tenant_a_type_and_a_time(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.endpoint("http://127.0.0.1:9/acme", tenant_id="acme")
    p.endpoint("http://127.0.0.1:9/globex", tenant_id="globex")
    p.registry.disable(p.endpoint("http://127.0.0.1:9/off", tenant_id="globex")[0])
    for _ in range(2):
        p.publish("order.paid", {}, tenant_id="acme")
    p.publish("order.sent", {}, tenant_id="acme")
    p.publish("order.paid", {}, tenant_id="globex")
    relay = p.start_relay()
    p.wait_until(lambda: p.value("select count(*) from webhooks.deliveries") == 4)
    relay.stop()

    acme = json.loads(run_cli("status", "--tenant", "acme", "--json", env=penv(p)).stdout)
    assert (acme["tenant"], acme["pending"], acme["endpoints"]) == ("acme", 3, 1)
    assert acme["disabled_endpoints"] == 0
    everyone = json.loads(run_cli("status", "--json", env=penv(p)).stdout)
    assert (everyone["pending"], everyone["endpoints"], everyone["disabled_endpoints"]) == (4, 3, 1)
    human = run_cli("status", "--tenant", "globex", env=penv(p)).stdout
    assert re.search(r"^deliveries pending:\s+1$", human, re.MULTILINE)
    assert "queue depth (all tenants)" in human

    def listed(*args: str) -> list[dict[str, object]]:
        result = run_cli("deliveries", "list", "--json", *args, env=penv(p))
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, object]] = json.loads(result.stdout)
        return rows

    assert len(listed("--event-type", "order.paid")) == 3
    assert len(listed("--event-type", "order.paid", "--tenant", "acme")) == 2
    p.conn.execute(
        "update webhooks.deliveries set created_at = now() - interval '3 hours'"
        " where event_id in (select id from webhooks.outbox where event_type = 'order.sent')"
    )
    assert {r["event_type"] for r in listed("--since", "1h")} == {"order.paid"}
    assert len(listed("--since", "2000-01-01T00:00")) == 4
    bad = run_cli("deliveries", "list", "--since", "someday", env=penv(p))
    assert bad.returncode == 2 and "neither a time" in bad.stderr


# -- endpoint test ---------------------------------------------------------------------------


def wenv(p: Pipeline, **more: str) -> dict[str, str]:
    """The CLI's environment, with the loopback receiver allowed as a destination."""
    return {**penv(p), "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8", **more}


def test_endpoint_test_sends_a_signed_event_now_and_records_it(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    p = pipeline
    ep, secret = p.endpoint(receiver.url("/hook"), event_types=["order.paid"])
    other, _ = p.endpoint(receiver.url("/other"))  # same tenant, every type: not a target
    receiver.on("/hook", lambda _: (200, {}, b'{"received": true}'))
    result = run_cli("endpoint", "test", ep, "--json", env=wenv(p))
    assert result.returncode == 0, result.stderr
    attempt = json.loads(result.stdout)
    assert attempt["status_code"] == 200 and attempt["outcome"] == "succeeded"
    assert attempt["response_body"] == '{"received": true}' and attempt["trigger"] == "test"
    assert attempt["event_type"] == "webhooks.test" and attempt["delivery_status"] == "succeeded"
    (request,) = receiver.to("/hook")
    body = verify(secret, request)
    assert body["type"] == "webhooks.test" and body["data"]["test"] is True
    assert request.headers["webhook-id"] == attempt["event_id"]

    # Recorded, found afterwards; sent to that endpoint only, even with a relay running.
    p.start_relay()
    listed = json.loads(
        run_cli("deliveries", "list", "--event-type", "webhooks.test", "--json", env=penv(p)).stdout
    )
    assert [(r["id"], r["status"]) for r in listed] == [(attempt["delivery_id"], "succeeded")]
    shown = json.loads(
        run_cli("deliveries", "show", str(attempt["delivery_id"]), "--json", env=penv(p)).stdout
    )
    assert [(a["trigger"], a["status_code"]) for a in shown["attempts"]] == [("test", 200)]
    time.sleep(1)
    assert receiver.to("/other") == []
    assert p.value("select count(*) from webhooks.deliveries where endpoint_id = %s", other) == 0
    assert run_cli("check", env=penv(p)).returncode == 0

    human = run_cli("endpoint", "test", ep, "--event-type", "order.paid", env=wenv(p))
    assert human.returncode == 0, human.stderr
    assert re.search(r"^status:\s+200$", human.stdout, re.MULTILINE)
    assert re.search(r"^duration:\s+\d+ ms$", human.stdout, re.MULTILINE)
    assert 'response: {"received": true}' in human.stdout


def test_endpoint_test_of_a_failing_endpoint_prints_the_attempt_and_exits_1(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    p = pipeline
    ep, _ = p.endpoint(receiver.on("/broken", lambda _: (500, {}, b"boom\nline two")))
    result = run_cli("endpoint", "test", ep, env=wenv(p))
    assert result.returncode == 1
    assert re.search(r"^status:\s+500$", result.stdout, re.MULTILINE)
    assert "response: boom line two" in result.stdout
    assert re.search(r"^delivery status:\s+pending$", result.stdout, re.MULTILINE)
    row = p.rows("select status, attempts, next_trigger from webhooks.deliveries")[0]
    assert row == {"status": "pending", "attempts": 1, "next_trigger": "scheduled"}

    # The product's destination guard applies: without the allowed network, loopback is
    # refused, and the refusal is the recorded attempt.
    guarded = {k: v for k, v in penv(p).items() if k != "WEBHOOKS_ALLOWED_NETWORKS"}
    blocked = run_cli("endpoint", "test", ep, "--json", env=guarded)
    assert blocked.returncode == 1
    assert json.loads(blocked.stdout)["error_kind"] == "blocked"
    assert len(receiver.to("/broken")) == 1


def test_endpoint_test_refuses_what_cannot_be_sent(pipeline: Pipeline) -> None:
    p = pipeline
    ep, _ = p.endpoint("http://127.0.0.1:9/x")
    p.registry.disable(ep, "testing")
    disabled = run_cli("endpoint", "test", ep, env=wenv(p))
    assert disabled.returncode == 1
    assert disabled.stderr.strip() == (
        f"error: endpoint {ep} is disabled: `webhooks endpoint enable {ep}` first"
    )
    bad_type = run_cli("endpoint", "test", ep, "--event-type", "no spaces", env=wenv(p))
    assert bad_type.returncode == 2 and "is not valid" in bad_type.stderr
    other = run_cli("endpoint", "test", ep, "--tenant", "acme", env=wenv(p))
    assert other.returncode == 1 and f"no endpoint with id {ep}" in other.stderr
    assert p.value("select count(*) from webhooks.outbox") == 0


# -- a broker URL the broker refuses -------------------------------------------------------


@pytest.mark.parametrize("daemon", [["relay"], ["worker", "--processes", "1"]])
def test_a_redis_database_the_server_lacks_is_a_setting_error(
    db_url: str, redis_url: str, daemon: list[str]
) -> None:
    # Waiting would not help: one line naming the variable, exit 2, before anything starts.
    missing = redis_url.rsplit("/", 1)[0] + "/999"
    result = run_cli(*daemon, env=env_of(db_url, missing), timeout=30)
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        == "error: REDIS_URL: the broker refuses it: Redis: DB index is out of range"
    )


def test_rabbitmq_credentials_it_refuses_are_a_setting_error(db_url: str) -> None:
    from urllib.parse import urlsplit

    from tests.conftest import RABBITMQ_URL
    from worker.dev.embedded import port_open

    where = urlsplit(RABBITMQ_URL)
    if not port_open(where.hostname or "", where.port or 5672):
        pytest.skip("no RabbitMQ listening")
    wrong = RABBITMQ_URL.replace("guest:guest", "guest:not-the-password")
    result = run_cli("relay", env=env_of(db_url, WEBHOOKS_BROKER_URL=wrong), timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: WEBHOOKS_BROKER_URL: the broker refuses it: RabbitMQ")
    assert len(result.stderr.strip().splitlines()) == 1
