"""The relay decides as the filter language does (issue 27): for generated filters, payloads
and subscription patterns, an event gets a delivery from the relay's fan-out statement (the
filter compiled to SQL/JSON path, evaluated by Postgres) exactly when
`worker.policy.filters.evaluate` and `producers.names.pattern_matches` say it passes."""

from __future__ import annotations

import json
from typing import Any

import hypothesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from producers import publish
from producers.names import pattern_matches
from tests.integration.test_relay import relay_once
from tests.pipeline import Pipeline, fan_out
from tests.unit.test_metrics import samples
from worker.observe import metrics
from worker.policy import filters
from worker.policy.jsonpath import compile_path

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = st.sampled_from(["a", "b", "ü"])
# Text jsonb can hold (no NUL, no lone surrogate), short so that values collide often.
TEXT = st.text(
    alphabet=st.sampled_from(["a", "b", "A", "é", "Ω", "😀", ".", "*", "\\", '"', "$", "\n"]),
    max_size=3,
)
NUMBERS = (
    st.integers(min_value=-3, max_value=3)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.5, -0.0, 1.0, 2.5, 1e16, 10**16 + 1])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
PAYLOADS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
SEGMENTS = st.lists(KEYS | st.sampled_from(["0", "1"]), max_size=3)
PATHS = st.sampled_from(["type", "tenant"]) | SEGMENTS.map(lambda s: ".".join(["data", *s]))


def operator(op: str) -> st.SearchStrategy[tuple[str, Any]]:
    if op in ("$eq", "$neq"):
        return st.tuples(st.just(op), SCALARS)
    if op in ("$in", "$nin"):
        return st.tuples(st.just(op), st.lists(SCALARS, min_size=1, max_size=3))
    if op in filters.COMPARISONS:
        return st.tuples(st.just(op), NUMBERS | TEXT)
    if op in ("$startsWith", "$endsWith"):
        return st.tuples(st.just(op), TEXT)
    return st.tuples(st.just(op), st.booleans())


OPS = st.sampled_from(
    [
        "$eq",
        "$neq",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$startsWith",
        "$endsWith",
        "$exist",
    ]
).flatmap(operator)


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    def field(path: str, ops: list[tuple[str, Any]], bare: Any, use_bare: bool) -> dict[str, Any]:
        return {path: bare if use_bare else dict(ops)}

    return st.builds(field, PATHS, st.lists(OPS, min_size=1, max_size=2), SCALARS, st.booleans())


FILTERS = st.recursive(
    conditions(),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs})
        | st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$and": fs})
        | inner.map(lambda f: {"$not": f})
        | st.tuples(inner, inner).map(lambda t: {**t[0], **t[1]})
    ),
    max_leaves=5,
)
TYPES = st.sampled_from(["order.paid", "order.paid.late", "invoice.paid", "order"])
PATTERNS = st.lists(
    st.sampled_from(["order.*", "*", "order.paid", "*.paid", "invoice.*", "order.*.late"]),
    min_size=1,
    max_size=2,
)


def delivered(p: Pipeline, event_id: str) -> set[str]:
    fan_out(p)
    rows = p.conn.execute(
        "select endpoint_id::text as e from webhooks.deliveries where event_id = %s", (event_id,)
    ).fetchall()
    return {r["e"] for r in rows}


@PROPERTY
@given(flt=FILTERS, data=PAYLOADS, event_type=TYPES)
@example(flt={"data.a": {"$gt": 1}}, data={"a": [[0, 2]]}, event_type="order.paid")
@example(flt={"data.0": "x"}, data={"0": "x"}, event_type="order.paid")
def test_the_relay_creates_a_delivery_exactly_when_the_filter_passes(
    pipeline: Pipeline, flt: dict[str, Any], data: Any, event_type: str
) -> None:
    p = pipeline
    try:
        parsed = filters.parse(flt)
    except filters.InvalidFilter:
        return  # generated past a limit: refused before anything is written
    p.conn.execute("delete from webhooks.endpoints")
    ep, _ = p.endpoint("http://127.0.0.1:9/x", tenant_id="acme", filter=flt)
    with p.conn.transaction():
        event = publish(p.conn, event_type, data, tenant_id="acme")
    expected, _ = filters.evaluate(parsed, event_type, "acme", json.loads(json.dumps(data)))
    hypothesis.event(f"passes: {expected}")
    assert (ep in delivered(p, event)) is expected, compile_path(parsed)


@PROPERTY
@given(patterns=PATTERNS, event_type=TYPES)
def test_the_relay_takes_an_event_type_exactly_when_a_pattern_matches_it(
    pipeline: Pipeline, patterns: list[str], event_type: str
) -> None:
    p = pipeline
    p.conn.execute("delete from webhooks.endpoints")
    ep, _ = p.endpoint("http://127.0.0.1:9/x", event_types=patterns)
    with p.conn.transaction():
        event = publish(p.conn, event_type, {})
    expected = any(pattern_matches(pt, event_type) for pt in patterns)
    hypothesis.event(f"matches: {expected}")
    assert (ep in delivered(p, event)) is expected


def test_the_relay_counts_what_each_endpoint_filter_dropped(pipeline: Pipeline) -> None:
    p = pipeline
    big, _ = p.endpoint("http://127.0.0.1:9/big", filter={"data.amount": {"$gte": 100}})
    eur, _ = p.endpoint("http://127.0.0.1:9/eur", filter={"data.currency": "EUR"})
    every, _ = p.endpoint("http://127.0.0.1:9/all")
    for amount, currency in [(5, "EUR"), (500, "USD"), (50, "USD"), (700, "EUR")]:
        p.publish("order.paid", {"amount": amount, "currency": currency})
    relay = relay_once(p)
    assert relay.stats.events == 4 and relay.stats.deliveries == 4 + 2 + 2
    assert relay.stats.filtered == {big: 2, eur: 2}
    got = p.rows("select endpoint_id::text as e, count(*) as n from webhooks.deliveries group by 1")
    assert {r["e"]: r["n"] for r in got} == {every: 4, big: 2, eur: 2}
    scraped = samples(
        metrics.relay_registry(
            relay.stats,
            metrics.BacklogCollector(lambda: dict.fromkeys(metrics.BACKLOG_GAUGES, 0.0)),
        )
    )
    assert scraped[("webhooks_events_filtered_total", (("endpoint", big),))] == 2
    assert scraped[("webhooks_events_filtered_total", (("endpoint", eur),))] == 2
    assert ("webhooks_events_filtered_total", (("endpoint", every),)) not in scraped
