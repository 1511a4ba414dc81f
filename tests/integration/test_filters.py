"""Payload filters and subscription patterns on endpoints (issue 27): set through the CLI and
the API, refused with the path of what is wrong, tried with test-filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.integration.test_api import Api, acme, client, globex, make_key, settings  # noqa: F401
from tests.integration.test_commands import penv
from tests.pipeline import Pipeline

BIG_EUR = {"data.amount": {"$gte": 100}, "data.currency": "EUR"}


def cli(p: Pipeline, *args: str) -> tuple[int, str, str]:
    result = run_cli(*args, env=penv(p))
    return result.returncode, result.stdout, result.stderr


def test_an_endpoint_gets_shows_replaces_and_loses_a_filter(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    p = pipeline
    code, out, err = cli(
        p,
        "endpoint",
        "add",
        "http://127.0.0.1:9/x",
        "--event-type",
        "order.*",
        "--filter",
        json.dumps(BIG_EUR),
        "--json",
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["filter"] == BIG_EUR and made["event_types"] == ["order.*"]
    code, out, _ = cli(p, "endpoint", "show", made["id"])
    assert code == 0 and '"data.amount": {"$gte": 100}' in out
    assert json.loads(cli(p, "endpoint", "list", "--json")[1])[0]["filter"] == BIG_EUR

    path = tmp_path / "filter.json"
    path.write_text(json.dumps({"tenant": "default"}, indent=2))
    code, out, err = cli(p, "endpoint", "update", made["id"], "--filter", f"@{path}", "--json")
    assert code == 0, err and json.loads(out)["filter"] == {"tenant": "default"}
    assert p.registry.get(made["id"]).filter == {"tenant": "default"}

    code, out, err = cli(p, "endpoint", "update", made["id"], "--no-filter", "--json")
    assert code == 0, err
    assert json.loads(out)["filter"] is None and p.registry.get(made["id"]).filter is None
    assert p.value("select filter_path from webhooks.endpoints") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--filter", '{"data.amount": {"$gt": "x", "$lt": []}}'],
            "error: filter.data.amount.$lt: expected a number or a string, got []",
        ),
        (
            ["--filter", '{"data.x": {"$regex": "(a+)+$"}}'],
            "error: filter.data.x.$regex: $regex is not supported",
        ),
        (["--filter", '{"data.x": {"$near": 1}}'], "error: filter.data.x.$near: unknown operator"),
        (["--filter", "{oops"], "error: filter: not valid JSON"),
        (["--filter", "@/nonexistent/f.json"], "cannot read '/nonexistent/f.json'"),
        (
            ["--event-type", "order.pa*"],
            "error: event type filter 'order.pa*' is not a valid pattern",
        ),
    ],
)
def test_a_bad_filter_or_pattern_is_one_line_exit_2_and_writes_nothing(
    pipeline: Pipeline, args: list[str], message: str
) -> None:
    p = pipeline
    code, _, err = cli(p, "endpoint", "add", "http://127.0.0.1:9/x", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert p.value("select count(*) from webhooks.endpoints") == 0
    ep, _ = p.endpoint("http://127.0.0.1:9/y")
    before = p.registry.get(ep)
    code, _, err = cli(p, "endpoint", "update", ep, *args)
    assert code == 2 and message in err, err
    assert p.registry.get(ep) == before


def test_test_filter_says_whether_a_payload_would_be_delivered_and_why_not(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    p = pipeline
    ep, _ = p.endpoint("http://127.0.0.1:9/x", event_types=["order.*"], filter=BIG_EUR)
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"amount": 99.5, "currency": "EUR"}))
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"amount": 100.0, "currency": "EUR"}))

    code, out, err = cli(
        p,
        "endpoint",
        "test-filter",
        ep,
        "--data",
        f"@{big}",
        "--event-type",
        "order.paid",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out) == {
        "endpoint_id": ep,
        "event_type": "order.paid",
        "delivered": True,
        "reason": None,
    }

    code, out, _ = cli(
        p, "endpoint", "test-filter", ep, "--data", f"@{small}", "--event-type", "order.paid"
    )
    assert code == 0 and "delivered:" in out and "no" in out
    assert "data.amount: 99.5 does not satisfy $gte 100" in out

    code, out, _ = cli(
        p,
        "endpoint",
        "test-filter",
        ep,
        "--data",
        f"@{big}",
        "--event-type",
        "order.paid.late",
        "--json",
    )
    verdict = json.loads(out)
    assert not verdict["delivered"] and "order.paid.late is not subscribed" in verdict["reason"]

    code, _, err = cli(p, "endpoint", "test-filter", ep, "--data", "{nope")
    assert code == 2 and "not valid JSON" in err
    code, _, err = cli(p, "endpoint", "test-filter", ep, "--data", "{}", "--tenant", "acme")
    assert code == 1 and f"no endpoint with id {ep}" in err


def test_the_api_sets_shows_refuses_and_tries_a_filter(acme: Api, globex: Api) -> None:  # noqa: F811
    made = acme.ok(
        "POST",
        "/v1/endpoints",
        json={
            "url": "http://127.0.0.1:9/x",
            "event_types": ["order.*", "invoice.paid"],
            "filter": BIG_EUR,
        },
    )
    assert made["filter"] == BIG_EUR and made["event_types"] == ["order.*", "invoice.paid"]
    assert acme.ok("GET", f"/v1/endpoints/{made['id']}")["filter"] == BIG_EUR

    bad = acme.call(
        "POST",
        "/v1/endpoints",
        json={"url": "http://127.0.0.1:9/x", "filter": {"data.a": {"$gt": True}}},
    )
    assert bad.status_code == 422
    assert bad.json()["detail"] == "filter.data.a.$gt: expected a number or a string, got true"
    assert bad.json()["errors"][0]["field"] == "filter"
    bad = acme.call(
        "POST", "/v1/endpoints", json={"url": "http://127.0.0.1:9/x", "event_types": ["a*"]}
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("event_types.0: ")
    bad = acme.call("PATCH", f"/v1/endpoints/{made['id']}", json={"filter": {"$or": []}})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("filter.$or: expected")

    tried = acme.ok(
        "POST",
        f"/v1/endpoints/{made['id']}/test-filter",
        json={"data": {"amount": 5, "currency": "EUR"}},
    )
    assert tried["event_type"] == "invoice.paid" and not tried["delivered"]
    assert tried["reason"] == "the filter does not pass: data.amount: 5 does not satisfy $gte 100"
    tried = acme.ok(
        "POST",
        f"/v1/endpoints/{made['id']}/test-filter",
        json={"data": {"amount": 500, "currency": "EUR"}, "event_type": "order.paid"},
    )
    assert tried["delivered"] and tried["reason"] is None
    # Tenant-scoped like every endpoint route.
    other = globex.call("POST", f"/v1/endpoints/{made['id']}/test-filter", json={"data": {}})
    assert other.status_code == 404

    cleared = acme.ok("PATCH", f"/v1/endpoints/{made['id']}", json={"filter": None})
    assert cleared["filter"] is None and cleared["event_types"] == ["order.*", "invoice.paid"]
