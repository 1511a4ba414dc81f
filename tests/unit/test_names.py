"""Event types and tenant ids follow one rule, `producers.names`, wherever they are checked."""

from __future__ import annotations

import re

import pytest

from producers import InvalidEvent
from producers.names import (
    MAX_EVENT_TYPE,
    MAX_TENANT,
    check_event_pattern,
    check_event_type,
    check_tenant,
    pattern_matches,
    pattern_regex,
)
from worker.errors import ConfigError, InvalidEndpoint
from worker.ops import validation
from worker.settings import Settings


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "tenant id is empty"),
        (7, "tenant id must be a string, got int"),
        ("t" * (MAX_TENANT + 1), f"over the limit of {MAX_TENANT}"),
        ("a/b", "tenant id 'a/b' must start with a letter or digit"),
        ("-a", "must start with a letter or digit and use only letters, digits and _ . : -"),
    ],
)
def test_a_tenant_id_outside_the_rule_is_refused_saying_why(value: object, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        check_tenant(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "event type is empty"),
        ("a" * (MAX_EVENT_TYPE + 1), f"over the limit of {MAX_EVENT_TYPE}"),
        ("no spaces", "use only letters, digits and _ . : / -"),
    ],
)
def test_an_event_type_outside_the_rule_is_refused_saying_why(value: str, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        check_event_type(value)


@pytest.mark.parametrize("value", ["acme", "t" * MAX_TENANT, "a.b:c_d-e", "0"])
def test_what_publish_accepts_as_a_tenant_endpoints_accept_too(value: str) -> None:
    assert check_tenant(value) == validation.check_tenant(value) == value


def test_the_validators_keep_their_own_wording() -> None:
    with pytest.raises(InvalidEndpoint, match=r"^tenant id 'a b' is not valid$"):
        validation.check_tenant("a b")
    with pytest.raises(
        InvalidEndpoint, match=r"^event type filter 'a b' is not a valid event type$"
    ):
        validation.check_event_types(["a b"])
    with pytest.raises(InvalidEvent, match=r"^event type 'a b' is not valid$"):
        validation.check_test_event_type("a b")


def test_an_endpoint_can_subscribe_under_the_default_operations_tenant() -> None:
    tenant = Settings.from_env({}).operations_tenant
    assert validation.check_tenant(tenant) == tenant == "operations"


@pytest.mark.parametrize("value", ["ops team", "opérations", "a/b", "t" * (MAX_TENANT + 1)])
def test_an_operations_tenant_no_endpoint_could_use_is_refused_at_start(value: str) -> None:
    # It was once any printable text of up to 100 characters: an operator could set one
    # that no endpoint could ever be registered under, and never receive an event.
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"WEBHOOKS_OPERATIONS_TENANT": value})
    assert caught.value.variable == "WEBHOOKS_OPERATIONS_TENANT"
    assert str(caught.value).startswith("WEBHOOKS_OPERATIONS_TENANT: tenant id ")
    assert "\n" not in str(caught.value)


def test_a_long_operations_tenant_endpoints_accept_is_accepted() -> None:
    tenant = "o" * MAX_TENANT
    assert Settings.from_env({"WEBHOOKS_OPERATIONS_TENANT": tenant}).operations_tenant == tenant


@pytest.mark.parametrize(
    ("pattern", "event_type", "taken"),
    [
        ("*", "order.paid", True),
        ("*", "a", True),
        ("order.*", "order.paid", True),
        ("order.*", "order.paid.late", False),  # one segment, not several
        ("order.*", "order", False),
        ("order.*", "orders.paid", False),
        ("*.paid", "order.paid", True),
        ("order.*.late", "order.paid.late", True),
        ("order.paid", "order.paid", True),
        ("order.paid", "order_paid", False),
        ("a-b.*", "a-b.c", True),
        ("a/b:c.*", "a/b:c.d", True),
    ],
)
def test_a_pattern_takes_whole_segments(pattern: str, event_type: str, taken: bool) -> None:
    assert check_event_pattern(pattern) == pattern
    assert pattern_matches(pattern, event_type) is taken
    assert (re.match(pattern_regex(pattern), event_type) is not None) is taken


@pytest.mark.parametrize("pattern", ["ord*er", "order.**", ".*", "", "order.*-x", "**"])
def test_a_pattern_with_a_partial_or_empty_segment_is_refused(pattern: str) -> None:
    with pytest.raises(InvalidEvent):
        check_event_pattern(pattern)
