"""The producers' payload limit: the argument, else WEBHOOKS_MAX_PAYLOAD_BYTES as it is now."""

from __future__ import annotations

import pytest

from producers import PayloadTooLarge, UnsupportedConnection, publish
from producers.settings import DEFAULT_MAX_PAYLOAD_BYTES, max_payload_bytes_from_env

PAYLOAD = {"text": "x" * 100}


def test_without_the_variable_the_default_limit_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOKS_MAX_PAYLOAD_BYTES", raising=False)
    assert max_payload_bytes_from_env() == DEFAULT_MAX_PAYLOAD_BYTES


def test_a_changed_variable_applies_to_the_next_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_MAX_PAYLOAD_BYTES", "50")
    with pytest.raises(PayloadTooLarge):
        publish(object(), "a.b", PAYLOAD)  # type: ignore[arg-type]
    monkeypatch.setenv("WEBHOOKS_MAX_PAYLOAD_BYTES", "5000")
    # The payload now passes its check and the next one, on the connection, refuses.
    with pytest.raises(UnsupportedConnection):
        publish(object(), "a.b", PAYLOAD)  # type: ignore[arg-type]


def test_an_explicit_limit_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_MAX_PAYLOAD_BYTES", "5000")
    with pytest.raises(PayloadTooLarge):
        publish(object(), "a.b", PAYLOAD, max_payload_bytes=50)  # type: ignore[arg-type]
