"""Operators' commands: dead letters, replay, inspection, status, prune, check, errors."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from producers import Event, publish_many
from tests.helpers import run_cli
from tests.integration.test_delivery import verify
from tests.pipeline import Pipeline, Relay, RelayConfig
from tests.receiver import Receiver
from worker.ops import dlq


def env(p: Pipeline) -> dict[str, str]:
    return {
        "DATABASE_URL": p.settings.require_database_url(),
        "REDIS_URL": p.settings.redis_url,
        "WEBHOOKS_BROKER_URL": p.settings.broker_url,
        "WEBHOOKS_RABBITMQ_QUEUE_TYPE": p.settings.rabbitmq_queue_type,
    }


def dead_letters(p: Pipeline, url: str, n: int, **endpoint: Any) -> tuple[str, str, list[str]]:
    """Publish n events to a new endpoint, relay them and kill every delivery."""
    ep, secret = p.endpoint(url, **endpoint)
    with psycopg.connect(p.settings.require_database_url()) as conn:
        ids = publish_many(conn, [Event("order.failed", {"i": i}) for i in range(n)])
        conn.commit()
    relay = Relay(RelayConfig(p.settings.require_database_url(), p.settings.redis_url))
    relay.step()
    relay.close()
    redis.Redis.from_url(p.settings.redis_url).flushdb()
    p.conn.execute(
        "update webhooks.deliveries set status = 'dead', dead_reason = 'attempts_exhausted',"
        " message_id = null, attempts = 0 where endpoint_id = %s",
        (ep,),
    )
    return ep, secret, ids


def queued_count(p: Pipeline) -> int:
    q = p.queue()
    try:
        return q.depth()
    finally:
        q.close()


def test_a_replayed_dead_letter_arrives_with_the_same_webhook_id(
    on_broker: Callable[..., Pipeline], receiver: Receiver
) -> None:
    p = on_broker()
    ep, secret, ids = dead_letters(p, receiver.url("/fixed"), 3)
    assert p.value("select count(*) from webhooks.dead_letters where replayed_at is null") == 3

    result = run_cli("dlq", "replay", "--endpoint", ep, "--json", env=env(p))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["replayed"] == 3
    p.start_relay()
    p.start_worker()
    got = receiver.wait_for("/fixed", 3)
    p.settle()
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(ids)
    for request in got:
        verify(secret, request)
    letters = p.rows("select replayed_at, replay_count, replays from webhooks.dead_letters")
    assert all(r["replay_count"] == 1 and r["replayed_at"] for r in letters)
    assert all(r["replays"][0]["by"] for r in letters)
    triggers = {r["trigger"] for r in p.rows("select trigger from webhooks.attempts")}
    assert triggers == {"replay"}
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 3


def test_replaying_twice_enqueues_each_delivery_once(on_broker: Callable[..., Pipeline]) -> None:
    p = on_broker()
    dead_letters(p, "http://127.0.0.1:9/x", 5)
    first = run_cli("dlq", "replay", "--all", "--json", env=env(p))
    second = run_cli("dlq", "replay", "--all", "--json", env=env(p))
    assert json.loads(first.stdout)["replayed"] == 5
    assert json.loads(second.stdout)["replayed"] == 0
    assert queued_count(p) == 5


def test_replay_of_an_unknown_id_is_refused_before_anything_is_written(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    _, _, _ = dead_letters(p, "http://127.0.0.1:9/x", 1)
    known = str(p.value("select delivery_id from webhooks.dead_letters"))
    for ids in (["--id", "99999"], ["--id", known, "--id", "99999"]):
        result = run_cli("dlq", "replay", *ids, env=env(p))
        assert result.returncode == 1
        assert result.stderr.strip() == "error: no current dead letter with id 99999"
    assert p.value("select replay_count from webhooks.dead_letters") == 0
    assert queued_count(p) == 0
    done = run_cli("dlq", "replay", "--id", known, env=env(p))
    assert done.returncode == 0 and done.stdout.strip() == "replayed 1 dead letter"


@pytest.mark.parametrize(
    ("variable", "url", "said"),
    [
        ("REDIS_URL", "redis://127.0.0.1:1/0", "Redis:"),  # the broker when none is named
        ("WEBHOOKS_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/%2F", "RabbitMQ:"),
    ],
)
def test_replay_with_the_broker_down_says_what_happened_in_one_line(
    pipeline: Pipeline, variable: str, url: str, said: str
) -> None:
    p = pipeline
    dead_letters(p, "http://127.0.0.1:9/x", 2)
    down = {k: v for k, v in env(p).items() if k != "WEBHOOKS_BROKER_URL"}
    down[variable] = url  # nothing listens on port 1
    result = run_cli("dlq", "replay", "--all", env=down)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: replayed 2 in Postgres; could not enqueue them ({said}")
    assert lines[0].endswith("the relay will enqueue them within its lease")
    # Postgres holds the replay; the deliveries wait for the scheduler, with a lease.
    assert p.value("select count(*) from webhooks.deliveries where status = 'pending'") == 2


def test_concurrent_replays_do_not_double_enqueue(pipeline: Pipeline) -> None:
    p = pipeline
    dead_letters(p, "http://127.0.0.1:9/x", 3000)
    results: list[int] = []

    def replay() -> None:
        with psycopg.connect(
            p.settings.require_database_url(), autocommit=True, row_factory=psycopg.rows.dict_row
        ) as conn:
            client = redis.Redis.from_url(p.settings.redis_url)
            results.append(dlq.replay(conn, client, dlq.Selection(everything=True)).replayed)

    threads = [threading.Thread(target=replay) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 3000
    assert queued_count(p) == 3000
    assert p.value("select count(*) from webhooks.dead_letters where replay_count <> 1") == 0


def test_replay_to_a_disabled_endpoint_is_refused_unless_enabled(pipeline: Pipeline) -> None:
    p = pipeline
    ep, _, _ = dead_letters(p, "http://127.0.0.1:9/x", 2)
    p.registry.disable(ep, "broken receiver")
    refused = run_cli("dlq", "replay", "--all", env=env(p))
    assert refused.returncode == 1
    assert "disabled" in refused.stderr and "--enable-endpoint" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert queued_count(p) == 0

    dry = run_cli("dlq", "replay", "--all", "--dry-run", "--enable-endpoint", env=env(p))
    assert "would replay 2" in dry.stdout and queued_count(p) == 0
    assert not p.registry.get(ep).enabled
    # Sizing a replay before fixing the endpoint: the dry run counts, and says what blocks.
    for selection in (["--all"], ["--endpoint", ep]):
        sized = run_cli("dlq", "replay", *selection, "--dry-run", env=env(p))
        assert sized.returncode == 0, sized.stderr
        assert "would replay 2" in sized.stdout
        assert f"endpoint {ep} is disabled: the replay needs --enable-endpoint" in sized.stdout
    assert not p.registry.get(ep).enabled and queued_count(p) == 0

    done = run_cli("dlq", "replay", "--all", "--enable-endpoint", env=env(p))
    assert done.returncode == 0, done.stderr
    assert "replayed 2" in done.stdout
    assert p.registry.get(ep).enabled and queued_count(p) == 2


def test_replay_limit_and_filters(pipeline: Pipeline) -> None:
    p = pipeline
    dead_letters(p, "http://127.0.0.1:9/x", 10)
    limited = run_cli("dlq", "replay", "--all", "--limit", "4", "--json", env=env(p))
    assert json.loads(limited.stdout)["replayed"] == 4
    other = run_cli("dlq", "replay", "--event-type", "nothing.here", "--json", env=env(p))
    assert json.loads(other.stdout)["replayed"] == 0
    assert run_cli("dlq", "replay", env=env(p)).returncode == 2  # nothing chosen


def test_dlq_list_and_show(pipeline: Pipeline) -> None:
    p = pipeline
    ep, _, ids = dead_letters(p, "http://127.0.0.1:9/x", 3)
    listed = json.loads(run_cli("dlq", "list", "--json", "--endpoint", ep, env=env(p)).stdout)
    assert sorted(r["event_id"] for r in listed) == sorted(ids)
    assert (
        run_cli("dlq", "list", "--reason", "expired", "--json", env=env(p)).stdout.strip() == "[]"
    )
    human = run_cli("dlq", "list", env=env(p)).stdout
    assert "DELIVERY_ID" in human and "order.failed" in human
    shown = run_cli("dlq", "show", str(listed[0]["delivery_id"]), env=env(p))
    assert shown.returncode == 0 and "payload:" in shown.stdout
    assert "{'number'" not in shown.stdout  # the attempts are a table, not a Python repr
    other_tenant = run_cli(
        "dlq", "show", str(listed[0]["delivery_id"]), "--tenant", "acme", env=env(p)
    )
    assert other_tenant.returncode == 1 and "no dead letter" in other_tenant.stderr


def test_deliveries_list_show_and_status(pipeline: Pipeline, receiver: Receiver) -> None:
    p = pipeline
    p.start_relay()
    p.start_worker()
    p.endpoint(receiver.url("/ok"))
    p.publish("a.b", {})
    p.settle()
    rows = json.loads(run_cli("deliveries", "list", "--json", env=env(p)).stdout)
    assert [r["status"] for r in rows] == ["succeeded"]
    # A finished delivery has no next attempt (its row keeps the last lease, never shown).
    assert rows[0]["next_attempt_at"] is None
    shown = json.loads(
        run_cli("deliveries", "show", str(rows[0]["id"]), "--json", env=env(p)).stdout
    )
    assert [a["status_code"] for a in shown["attempts"]] == [200]
    assert shown["next_attempt_at"] is None
    human = run_cli("deliveries", "show", str(rows[0]["id"]), env=env(p)).stdout
    assert "{'number'" not in human and re.search(r"^attempts:\s+1$", human, re.MULTILINE)
    st = json.loads(run_cli("status", "--json", env=env(p)).stdout)
    assert st["outbox_backlog"] == 0 and st["pending"] == 0 and st["queue_depth"] == 0
    assert "outbox backlog" in run_cli("status", env=env(p)).stdout


def test_prune_removes_only_finished_events(pipeline: Pipeline, receiver: Receiver) -> None:
    p = pipeline
    p.endpoint(receiver.url("/ok"))
    ids = [p.publish("a.b", {"i": i}) for i in range(4)]
    relay = Relay(RelayConfig(p.settings.require_database_url(), p.settings.redis_url))
    relay.step()
    relay.close()
    p.conn.execute(
        "update webhooks.deliveries set status = 'succeeded' where event_id = %s", (ids[0],)
    )
    p.conn.execute(
        "update webhooks.deliveries set status = 'dead', dead_reason = 'expired'"
        " where event_id = %s",
        (ids[1],),
    )
    # ids[2] stays pending; ids[3] is not yet relayed... relay it but keep it pending too.
    p.conn.execute(
        "insert into webhooks.attempts (delivery_id, tenant_id, number, trigger, started_at,"
        " duration_seconds, status_code) select id, tenant_id, 1, 'scheduled', now(), 0.01, 200"
        " from webhooks.deliveries where event_id = %s",
        (ids[0],),
    )
    dry = run_cli("prune", "--older-than", "0s", "--dry-run", env=env(p))
    assert "would delete 1 events, 1 deliveries, 1 attempts, 0 dead letters" in dry.stdout
    # The dry run counts what the deletion then removes, not zeros it never counted.
    would = json.loads(
        run_cli("prune", "--older-than", "0s", "--dry-run", "--json", env=env(p)).stdout
    )
    done = json.loads(run_cli("prune", "--older-than", "0s", "--yes", "--json", env=env(p)).stdout)
    assert done["events"] == 1 and done["deliveries"] == 1 and done["attempts"] == 1
    assert {k: v for k, v in would.items() if k != "dry_run"} == {
        k: v for k, v in done.items() if k != "dry_run"
    }
    left = {str(r["id"]) for r in p.rows("select id from webhooks.outbox")}
    assert left == set(ids[1:])
    with_dead = json.loads(
        run_cli(
            "prune", "--older-than", "0s", "--include-dead", "--yes", "--json", env=env(p)
        ).stdout
    )
    assert with_dead["events"] == 1 and with_dead["dead_letters"] == 1
    assert (
        json.loads(run_cli("prune", "--older-than", "30d", "--json", env=env(p)).stdout)["events"]
        == 0
    )


def test_check_passes_then_names_what_is_broken(pipeline: Pipeline, receiver: Receiver) -> None:
    p = pipeline
    p.start_relay()
    p.start_worker()
    p.endpoint(receiver.url("/ok"))
    p.publish("a.b", {})
    p.settle()
    ok = run_cli("check", env=env(p))
    assert ok.returncode == 0, ok.stdout
    p.conn.execute("update webhooks.deliveries set attempts = attempts + 1")
    broken = run_cli("check", "--json", env=env(p))
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["violations"]["attempt_count_matches_rows"]


def test_a_delivery_behind_an_open_circuit_says_so(pipeline: Pipeline) -> None:
    p = pipeline
    ep, _ = p.endpoint("http://127.0.0.1:9/down")
    p.publish("a.b", {})
    relay = Relay(RelayConfig(p.settings.require_database_url(), p.settings.redis_url))
    relay.step()
    relay.close()
    delivery = p.value("select id from webhooks.deliveries")
    p.conn.execute(
        "update webhooks.deliveries set locked_until = null, next_attempt_at = now() + '4 days'"
    )
    p.conn.execute(
        "update webhooks.endpoints set circuit_open_until = '2030-01-02 03:04:05+00' where id = %s",
        (ep,),
    )
    shown = run_cli("deliveries", "show", str(delivery), env=env(p))
    assert "after the endpoint's circuit closes (next probe at 2030-01-02 03:04:05 UTC)" in (
        shown.stdout
    )
    refused = run_cli("deliveries", "retry", str(delivery), env=env(p))
    assert refused.returncode == 1
    assert "circuit is open" in refused.stderr and f"endpoint reset {ep}" in refused.stderr
    assert queued_count(p) == 1  # only the relay's own message: the retry queued nothing


def test_check_reports_a_stalled_pipeline_with_no_relay(pipeline: Pipeline) -> None:
    # No relay is running: an event older than the grace is named, and the exit status says
    # so, which is what a cron job or a liveness alert needs.
    p = pipeline
    p.publish("a.b", {})
    assert run_cli("check", env=env(p)).returncode == 0  # still within the grace
    p.conn.execute("update webhooks.outbox set created_at = now() - interval '10 minutes'")
    stalled = run_cli("check", "--json", env=env(p))
    assert stalled.returncode == 1
    assert len(json.loads(stalled.stdout)["violations"]["outbox_relayed"]) == 1
    text = run_cli("check", env=env(p))
    assert "is a relay running?" in text.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["deliveries", "show", "999999"], 1, "error: no delivery with id 999999"),
        (["dlq", "show", "424242"], 1, "error: no dead letter with id 424242"),
        (["endpoint", "show", "not-a-uuid"], 1, "error: no endpoint with id not-a-uuid"),
        (["dlq", "list", "--endpoint", "nope"], 1, "error: no endpoint with id nope"),
        (["dlq", "list", "--since", "yesterdayish"], 2, "neither a time"),
        (["prune", "--older-than", "soon"], 2, "not a duration"),
        (["check", "--grace", "5parsecs"], 2, "--grace: not a duration: '5parsecs'"),
        (
            ["endpoint", "rotate-secret", "x", "--grace", "5parsecs"],
            2,
            "--grace: not a duration: '5parsecs'",
        ),
        (["relay", "--lease", "1y"], 2, "--lease: not a duration: '1y'"),
        (["deliveries", "list", "--status", "lost"], 2, "Invalid value"),
        (["endpoint", "add", "ftp://x"], 2, "error: URL must use http or https"),
        (
            ["endpoint", "add", "not-a-url"],
            2,
            "error: URL must start with http:// or https://, got 'not-a-url'",
        ),
        (["endpoint", "add", "https://u:p@x.io"], 2, "error: URL must not contain credentials"),
        (["endpoint", "add", "https://x.io", "--header", "webhook-id: 1"], 2, "cannot be set"),
        (["publish", "a.b", "--data", "{not json"], 2, "not valid JSON"),
        (["publish", "", "--data", "{}"], 2, "error: event type is empty"),
    ],
)
def test_bad_input_is_one_clear_line(
    pipeline: Pipeline, args: list[str], code: int, message: str
) -> None:
    result = run_cli(*args, env=env(pipeline))
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unmigrated_database_is_one_line(empty_db_url: str) -> None:
    # The daemons too: they refuse to start rather than fail every batch.
    daemons = (["relay"], ["worker", "--processes", "1"])
    for args in (["status"], ["dlq", "list"], ["endpoint", "list"], ["check"], *daemons):
        result = run_cli(*args, env={"DATABASE_URL": empty_db_url})
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == ["error: the webhooks schema is missing or behind: run `webhooks migrate`"]
