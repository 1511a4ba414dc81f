"""Which OTEL_* variables turn the daemons' tracing on, and WEBHOOKS_TRACEPARENT."""

from __future__ import annotations

import sys

import pytest

from worker.errors import ConfigError
from worker.observe.tracing import from_settings
from worker.settings import Settings, traces_exporters

ENDPOINT = "http://collector:4318"


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, ()),  # nothing asked: no traces, not OpenTelemetry's default otlp to localhost
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ("otlp",),
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("console",)),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_endpoint_is_set(
    env: dict[str, str], exporters: tuple[str, ...]
) -> None:
    assert traces_exporters(env) == exporters
    assert Settings.from_env(env).traces_exporters == exporters


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        ({"WEBHOOKS_TRACEPARENT": "yes"}, "WEBHOOKS_TRACEPARENT"),
    ],
)
def test_what_cannot_be_traced_as_asked_names_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable


def test_traceparent_is_off_unless_turned_on() -> None:
    assert Settings.from_env({}).traceparent is False
    assert Settings.from_env({"WEBHOOKS_TRACEPARENT": "on"}).traceparent is True
    assert Settings.from_env({"WEBHOOKS_TRACEPARENT": "off"}).traceparent is False


def test_tracing_off_builds_nothing() -> None:
    assert from_settings(Settings(), "webhooks-relay") is None


def test_tracing_asked_without_the_otel_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError) as caught:
        from_settings(Settings(traces_exporters=("otlp",)), "webhooks-relay")
    assert "pip install 'webhooks-outbox[otel]'" in str(caught.value)


def test_console_tracing_names_the_service_unless_the_environment_does() -> None:
    tracing = from_settings(Settings(traces_exporters=("console",)), "webhooks-worker")
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "webhooks-worker"
    tracing.provider.shutdown()
