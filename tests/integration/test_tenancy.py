"""Tenants are isolated (guarantee 8): no command or API that takes a tenant reaches another's.

Two tenants, acme and globex, each with an endpoint that succeeds and one that fails its
event into the dead letters. Every command that takes --tenant (endpoint show, disable, enable,
rotate-secret, delete; deliveries list, show; dlq list, show, replay; publish) is pointed
at acme's rows with --tenant globex: it finds nothing, changes nothing, and says so on one
line; the same command with --tenant acme works, so the refusal is not vacuous.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
import standardwebhooks
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from tests.pipeline import Pipeline
from tests.receiver import Receiver, running_receiver, status
from tests.unit.test_properties import NO_SURROGATES
from worker import cli
from worker.errors import NotFound
from worker.ops import deliveries, dlq
from worker.ops.endpoints import Endpoints
from worker.queue import redis as queue
from worker.store.vault import Vault


@dataclass
class Tenant:
    name: str
    ok: str  # endpoint that succeeds, every event type
    ok_secret: str
    dead: str  # endpoint of invoice.failed only, which fails it into the dead letters
    events: list[str]
    delivered: list[int]  # deliveries that succeeded
    letters: list[int]  # dead letters' delivery ids


@dataclass
class World:
    p: Pipeline
    receiver: Receiver
    acme: Tenant
    globex: Tenant


def invoke(p: Pipeline, *args: str) -> Any:
    """Run `webhooks ARGS` in this process against the test's database and Redis."""
    cli.settings.cache_clear()
    env = {"DATABASE_URL": p.settings.require_database_url(), "REDIS_URL": p.settings.redis_url}
    try:
        return CliRunner().invoke(cli.main, list(args), env=env)
    finally:
        cli.settings.cache_clear()


def ok_json(p: Pipeline, *args: str) -> Any:
    result = invoke(p, *args, "--json")
    assert result.exit_code == 0, (args, result.output, result.stderr)
    return json.loads(result.stdout)


def refused(p: Pipeline, *args: str, what: str) -> None:
    """Assert the command found nothing: exit 1, one line naming what it did not find."""
    result = invoke(p, *args)
    assert result.exit_code == 1, (args, result.stdout, result.stderr)
    # (rotate-secret warns first that secrets are stored unencrypted: no key in this test)
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: no {what} with id"), result.stderr
    assert result.stdout == ""


@pytest.fixture
def world(pipeline: Pipeline) -> Iterator[World]:
    p = pipeline
    with running_receiver() as receiver:
        p.start_relay(lease=1.0)
        p.start_worker()
        tenants = {}
        for name in ("acme", "globex"):
            ok, ok_secret = p.endpoint(receiver.url(f"/{name}"), tenant_id=name)
            dead, _ = p.endpoint(
                receiver.on(f"/{name}-dead", status(500)),
                tenant_id=name,
                event_types=["invoice.failed"],
            )
            events = [
                p.publish(kind, {"tenant": name, "n": n}, tenant_id=name)
                for n, kind in enumerate(["invoice.paid", "invoice.paid", "invoice.failed"])
            ]
            tenants[name] = Tenant(name, ok, ok_secret, dead, events, [], [])
        p.settle()
        for t in tenants.values():
            t.delivered = [
                r["id"]
                for r in p.rows(
                    "select id from webhooks.deliveries where endpoint_id = %s order by id", t.ok
                )
            ]
            t.letters = [
                r["delivery_id"]
                for r in p.rows(
                    "select delivery_id from webhooks.dead_letters where endpoint_id = %s",
                    t.dead,
                )
            ]
            assert len(t.delivered) == 3 and len(t.letters) == 1
        yield World(p, receiver, tenants["acme"], tenants["globex"])


def test_endpoint_commands_never_reach_another_tenants_endpoint(world: World) -> None:
    p, acme = world.p, world.acme
    secrets_before = p.value("select secrets::text from webhooks.endpoints where id = %s", acme.ok)

    refused(p, "endpoint", "show", acme.ok, "--tenant", "globex", what="endpoint")
    refused(p, "endpoint", "disable", acme.ok, "--tenant", "globex", what="endpoint")
    refused(p, "endpoint", "rotate-secret", acme.ok, "--tenant", "globex", what="endpoint")
    refused(p, "endpoint", "delete", acme.ok, "--tenant", "globex", what="endpoint")
    p.registry.disable(acme.dead, "broken", tenant_id="acme")
    refused(p, "endpoint", "enable", acme.dead, "--tenant", "globex", what="endpoint")

    listed = ok_json(p, "endpoint", "list", "--tenant", "globex")
    assert {e["id"] for e in listed} == {world.globex.ok, world.globex.dead}
    # Nothing changed: still enabled, same secrets, still there, still disabled.
    assert p.registry.get(acme.ok).enabled
    assert (
        p.value("select secrets::text from webhooks.endpoints where id = %s", acme.ok)
        == secrets_before
    )
    assert not p.registry.get(acme.dead).enabled
    assert p.value("select count(*) from webhooks.deliveries where endpoint_id = %s", acme.ok) == 3

    # The owner can do each of them.
    shown = invoke(p, "endpoint", "show", acme.ok, "--tenant", "acme", "--json")
    assert shown.exit_code == 0 and "whsec_" not in shown.stdout  # a count, never a secret
    assert json.loads(shown.stdout)["health"]["attempts_24h"] == 3
    ok_json(p, "endpoint", "rotate-secret", acme.ok, "--tenant", "acme")
    ok_json(p, "endpoint", "enable", acme.dead, "--tenant", "acme")
    ok_json(p, "endpoint", "disable", acme.ok, "--tenant", "acme")
    ok_json(p, "endpoint", "delete", acme.ok, "--tenant", "acme", "--yes")
    assert p.value("select count(*) from webhooks.endpoints where id = %s", acme.ok) == 0


def test_delivery_commands_never_show_another_tenants_deliveries(world: World) -> None:
    p, acme, globex = world.p, world.acme, world.globex
    mine = ok_json(p, "deliveries", "list", "--tenant", "globex")
    assert {r["tenant_id"] for r in mine} == {"globex"}
    assert not {r["id"] for r in mine} & set(acme.delivered + acme.letters)
    assert len(mine) == 4  # three succeeded, one dead
    for narrowed in (["--endpoint", acme.ok], ["--event", acme.events[0]]):
        assert ok_json(p, "deliveries", "list", "--tenant", "globex", *narrowed) == []

    for delivery_id in acme.delivered + acme.letters:
        refused(p, "deliveries", "show", str(delivery_id), "--tenant", "globex", what="delivery")
    shown = ok_json(p, "deliveries", "show", str(acme.delivered[0]), "--tenant", "acme")
    assert shown["payload"]["tenant"] == "acme" and len(shown["attempts"]) == 1
    assert ok_json(p, "deliveries", "show", str(globex.delivered[0]), "--tenant", "globex")


def test_dead_letter_commands_never_show_or_replay_another_tenants_letters(
    world: World,
) -> None:
    p, acme, globex = world.p, world.acme, world.globex
    listed = ok_json(p, "dlq", "list", "--tenant", "globex")
    assert sorted(r["delivery_id"] for r in listed) == sorted(globex.letters)
    assert ok_json(p, "dlq", "list", "--tenant", "globex", "--endpoint", acme.dead) == []
    for letter in acme.letters:
        refused(p, "dlq", "show", str(letter), "--tenant", "globex", what="dead letter")
    assert ok_json(p, "dlq", "show", str(acme.letters[0]), "--tenant", "acme")["attempts"]

    acme_heard = len(world.receiver.to("/acme-dead"))
    # Another tenant's dead letter is unknown by id, as with show, and selects nothing by
    # endpoint.
    replay_as_globex = ("dlq", "replay", "--tenant", "globex")
    refused(p, *replay_as_globex, "--id", str(acme.letters[0]), what="current dead letter")
    assert ok_json(p, *replay_as_globex, "--endpoint", acme.dead)["replayed"] == 0
    world.receiver.on("/globex-dead", lambda _: (200, {}, b"fixed"))
    globex_heard = len(world.receiver.to("/globex-dead"))
    broad = ["--event-type", "invoice.failed", "--reason", "attempts_exhausted"]
    assert ok_json(p, "dlq", "replay", "--tenant", "globex", *broad)["replayed"] == 1
    assert ok_json(p, "dlq", "replay", "--tenant", "globex", "--all")["replayed"] == 0
    replayed = p.rows(
        "select tenant_id, replay_count from webhooks.dead_letters order by delivery_id"
    )
    assert {(r["tenant_id"], r["replay_count"]) for r in replayed} == {("acme", 0), ("globex", 1)}
    assert (
        p.value(
            "select count(*) from webhooks.deliveries where id = any(%s) and status = 'dead'",
            acme.letters,
        )
        == 1
    )
    # globex's replayed letter is delivered; acme's receiver hears nothing new.
    world.receiver.wait_for("/globex-dead", globex_heard + 1)
    p.settle()
    assert len(world.receiver.to("/acme-dead")) == acme_heard
    assert p.value("select status from webhooks.deliveries where id = %s", globex.letters[0]) == (
        "succeeded"
    )


def test_replay_enables_only_the_tenants_own_disabled_endpoints(world: World) -> None:
    p, acme, globex = world.p, world.acme, world.globex
    p.registry.disable(acme.dead, "broken", tenant_id="acme")
    p.registry.disable(globex.dead, "broken", tenant_id="globex")
    result = ok_json(p, "dlq", "replay", "--all", "--tenant", "globex", "--enable-endpoint")
    assert result["enabled_endpoints"] == [globex.dead] and result["replayed"] == 1
    assert p.registry.get(globex.dead).enabled and not p.registry.get(acme.dead).enabled


def test_an_event_published_for_one_tenant_reaches_only_its_endpoints(world: World) -> None:
    p, receiver, acme, globex = world.p, world.receiver, world.acme, world.globex
    heard_by_acme = len(receiver.to("/acme")) + len(receiver.to("/acme-dead"))
    heard_by_globex = len(receiver.to("/globex"))
    result = invoke(p, "publish", "invoice.paid", "--data", '{"for": "globex"}',
                    "--tenant", "globex", "--idempotency-key", "k1", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    event_id = json.loads(result.stdout)["id"]
    got = receiver.wait_for("/globex", heard_by_globex + 1)
    request = [r for r in got if r.headers["webhook-id"] == event_id]
    assert len(request) == 1
    p.settle()
    assert len(receiver.to("/acme")) + len(receiver.to("/acme-dead")) == heard_by_acme
    headers = {k: v for k, v in request[0].headers.items() if k.startswith("webhook-")}
    standardwebhooks.Webhook(globex.ok_secret).verify(request[0].body.decode(), headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(acme.ok_secret).verify(request[0].body.decode(), headers)
    # Idempotency keys are per tenant: acme reusing globex's key gets an event of its own,
    # never globex's id.
    again = ok_json(p, "publish", "invoice.paid", "--data", "{}", "--tenant", "acme",
                    "--idempotency-key", "k1")  # fmt: skip
    assert again["id"] != event_id
    same = ok_json(p, "publish", "invoice.paid", "--data", "{}", "--tenant", "globex",
                   "--idempotency-key", "k1")  # fmt: skip
    assert same["id"] == event_id
    check = invoke(p, "check")
    assert check.exit_code == 0, check.stdout


def test_a_delivery_row_crossing_tenants_is_never_sent(world: World) -> None:
    """Even a delivery that somehow joins acme's event to globex's endpoint is not sent."""
    p, receiver, acme, globex = world.p, world.receiver, world.acme, world.globex
    heard = len(receiver.to("/globex"))
    row = p.rows(
        "insert into webhooks.deliveries (tenant_id, event_id, endpoint_id, event_created_at,"
        " message_id) select 'acme', id, %s, created_at, gen_random_uuid()"
        " from webhooks.outbox where id = %s returning id, message_id::text",
        globex.ok,
        acme.events[0],
    )[0]
    client = redis.Redis.from_url(p.settings.redis_url)
    queue.enqueue(client, p.settings.queue_name, [(row["id"], row["message_id"])])
    p.wait_until(
        lambda: (
            p.value("select status from webhooks.deliveries where id = %s", row["id"]) == "dead"
        ),
        what="the crossing delivery to be killed",
    )
    assert p.value(
        "select reason from webhooks.dead_letters where delivery_id = %s", row["id"]
    ) == ("tenant_mismatch")
    assert len(receiver.to("/globex")) == heard
    assert p.value("select attempts from webhooks.deliveries where id = %s", row["id"]) == 0
    # And `webhooks check` names it.
    check = invoke(p, "check", "--json")
    assert check.exit_code == 1
    assert json.loads(check.stdout)["violations"]["tenants_isolated"][0]["delivery_id"] == row["id"]


#: Any text Postgres can hold (a NUL or a lone surrogate is refused before any query).
TENANT_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True) | st.text(
    st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00"), max_size=20
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(other=TENANT_NAMES)
def test_any_other_tenant_name_sees_nothing_through_the_api(world: World, other: str) -> None:
    p, acme = world.p, world.acme
    with psycopg.connect(
        p.settings.require_database_url(), autocommit=True, row_factory=dict_row
    ) as conn:
        registry = Endpoints(conn, Vault(None))
        if other in ("acme", "globex"):
            return
        assert registry.list(tenant_id=other) == []
        for call in (
            lambda: registry.get(acme.ok, tenant_id=other),
            lambda: registry.disable(acme.ok, tenant_id=other),
            lambda: registry.enable(acme.dead, tenant_id=other),
            lambda: registry.rotate_secret(acme.ok, tenant_id=other),
            lambda: registry.delete(acme.ok, tenant_id=other),
            lambda: deliveries.show(conn, acme.delivered[0], other),
            lambda: dlq.show(conn, acme.letters[0], other),
            lambda: dlq.replay(
                conn,
                redis.Redis.from_url(p.settings.redis_url),
                dlq.Selection(ids=tuple(acme.letters), tenant_id=other),
            ),
        ):
            with pytest.raises(NotFound):
                call()
        assert deliveries.list_deliveries(conn, tenant_id=other) == []
        assert dlq.list_letters(conn, dlq.Selection(tenant_id=other), history=True) == []
    assert p.registry.get(acme.ok).enabled
