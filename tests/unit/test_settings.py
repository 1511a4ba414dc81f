"""Settings: every variable parsed, every malformed value named."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.errors import ConfigError
from worker.settings import (
    DEFAULT_SCHEDULE,
    Settings,
    format_duration,
    parse_duration,
    parse_schedule,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("4d", 345600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1w", 604800),
        (" 5S ", 5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "-5s", "5 m", "m5", "1.5.3s", "4d!", "0", "30"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**8))
def test_durations_round_trip_through_their_short_form(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_defaults_match_the_brief() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (
        s.retry_schedule == DEFAULT_SCHEDULE == parse_schedule("0s,5s,5m,30m,2h,5h,10h,14h,20h,24h")
    )
    assert (s.max_delivery_age, s.disable_after, s.request_timeout) == (345600, 432000, 30)
    assert (s.max_payload_bytes, s.metrics_port, s.relay_metrics_port) == (262144, 9191, 9192)
    assert s.allowed_networks == () and s.log_format == "text" and s.secret_key is None


KEY = "k" * 32


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/app",
            "REDIS_URL": "redis://r:6380/1",
            "WEBHOOKS_SECRET_KEY": KEY,
            "WEBHOOKS_RETRY_SCHEDULE": "0s, 1s,2m",
            "WEBHOOKS_MAX_DELIVERY_AGE": "1d",
            "WEBHOOKS_DISABLE_AFTER": "2d",
            "WEBHOOKS_REQUEST_TIMEOUT": "10s",
            "WEBHOOKS_MAX_PAYLOAD_BYTES": "1024",
            "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128",
            "WEBHOOKS_METRICS_PORT": "9300",
            "WEBHOOKS_RELAY_METRICS_PORT": "9301",
            "WEBHOOKS_LOG_FORMAT": "json",
            "WEBHOOKS_LOG_LEVEL": "debug",
        }
    )
    assert s.retry_schedule == (0, 1, 120)
    assert s.allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert (s.max_delivery_age, s.disable_after, s.request_timeout) == (86400, 172800, 10)
    assert (s.max_payload_bytes, s.metrics_port, s.relay_metrics_port) == (1024, 9300, 9301)
    assert s.log_format == "json" and s.secret_key == KEY
    assert s.log_level == "debug" and Settings.from_env({}).log_level == "info"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "http://x"),
        ("WEBHOOKS_BROKER_URL", "kafka://x"),
        ("WEBHOOKS_BROKER_URL", "127.0.0.1:5672"),
        ("WEBHOOKS_RETRY_SCHEDULE", "5s,,soon"),
        ("WEBHOOKS_RETRY_SCHEDULE", ","),
        ("WEBHOOKS_MAX_DELIVERY_AGE", "0s"),
        ("WEBHOOKS_DISABLE_AFTER", "forever"),
        ("WEBHOOKS_REQUEST_TIMEOUT", "-1"),
        # A bare number is no duration: seconds? days? (it once meant seconds).
        ("WEBHOOKS_REQUEST_TIMEOUT", "30"),
        ("WEBHOOKS_RETRY_SCHEDULE", "0,5,300"),
        ("WEBHOOKS_MAX_PAYLOAD_BYTES", "1kb"),
        ("WEBHOOKS_ALLOWED_NETWORKS", "10.0.0.0/33"),
        ("WEBHOOKS_METRICS_PORT", "70000"),
        ("WEBHOOKS_RELAY_METRICS_PORT", "http"),
        ("WEBHOOKS_LOG_FORMAT", "xml"),
        ("WEBHOOKS_LOG_LEVEL", "INFO"),
        ("WEBHOOKS_LOG_LEVEL", "trace"),
        ("WEBHOOKS_SECRET_KEY", "hunter2"),
        ("WEBHOOKS_SECRET_KEY", "x" * 40 + ",short"),
    ],
)
def test_malformed_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable + ":")
    assert "invalid literal" not in str(caught.value)  # no Python in an operator's message


def test_the_broker_defaults_to_redis_url_so_existing_deployments_keep_their_queue() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://r:6380/1"})
    assert s.broker_url == "redis://r:6380/1" and s.broker_is_redis


@pytest.mark.parametrize("url", ["amqp://guest:guest@mq:5672/%2F", "amqps://mq/prod"])
def test_a_rabbitmq_broker_url_is_accepted(url: str) -> None:
    s = Settings.from_env({"WEBHOOKS_BROKER_URL": url})
    assert s.broker_url == url and not s.broker_is_redis


def test_a_number_that_is_not_one_says_so() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"WEBHOOKS_MAX_PAYLOAD_BYTES": "abc"})
    assert str(caught.value) == "WEBHOOKS_MAX_PAYLOAD_BYTES: must be a whole number, got 'abc'"


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20))
def test_schedules_round_trip(delays: list[int]) -> None:
    text = ",".join(format_duration(d) if d else "0s" for d in delays)
    assert parse_schedule(text) == tuple(float(d) for d in delays)


def test_a_blank_duration_is_refused_like_any_other_bad_one() -> None:
    # It once said "empty duration", unlike every other bad value.
    with pytest.raises(ValueError, match="not a duration: ' '"):
        parse_duration(" ")


def test_the_rabbitmq_queue_type_is_classic_unless_quorum_is_asked_for() -> None:
    assert Settings.from_env({}).rabbitmq_queue_type == "classic"
    env = {"WEBHOOKS_RABBITMQ_QUEUE_TYPE": "quorum"}
    assert Settings.from_env(env).rabbitmq_queue_type == "quorum"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"WEBHOOKS_RABBITMQ_QUEUE_TYPE": "stream"})
    assert str(caught.value).startswith("WEBHOOKS_RABBITMQ_QUEUE_TYPE:")
