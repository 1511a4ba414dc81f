"""WEBHOOKS_EVENT_TYPES and WEBHOOKS_VALIDATE_PAYLOADS: read by producers.settings for the
library, by worker.settings for the CLI and the API, with the same checks."""

from __future__ import annotations

import pytest

from producers import InvalidEvent, publish
from producers.settings import event_types_from_env, validate_payloads_from_env
from worker.errors import ConfigError
from worker.settings import Settings


def test_the_defaults_are_open_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOKS_EVENT_TYPES", raising=False)
    monkeypatch.setenv("WEBHOOKS_VALIDATE_PAYLOADS", "")
    assert (event_types_from_env(), validate_payloads_from_env()) == ("open", "off")
    settings = Settings.from_env({})
    assert (settings.event_types, settings.validate_payloads) == ("open", "off")


def test_set_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_EVENT_TYPES", "known")
    monkeypatch.setenv("WEBHOOKS_VALIDATE_PAYLOADS", "warn")
    assert (event_types_from_env(), validate_payloads_from_env()) == ("known", "warn")
    env = {"WEBHOOKS_EVENT_TYPES": "known", "WEBHOOKS_VALIDATE_PAYLOADS": "reject"}
    settings = Settings.from_env(env)
    assert (settings.event_types, settings.validate_payloads) == ("known", "reject")


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("WEBHOOKS_EVENT_TYPES", "closed", "must be 'open' or 'known', got 'closed'"),
        ("WEBHOOKS_VALIDATE_PAYLOADS", "on", "must be 'off', 'warn' or 'reject', got 'on'"),
    ],
)
def test_a_malformed_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    with pytest.raises(ConfigError) as config:
        Settings.from_env({name: value})
    assert str(config.value) == f"{name}: {said}"
    monkeypatch.setenv(name, value)
    # The library refuses before it looks at the connection: nothing is written.
    with pytest.raises(InvalidEvent) as refused:
        publish(object(), "a.b", {})  # type: ignore[arg-type]
    assert str(refused.value) == f"{name}: {said}"
