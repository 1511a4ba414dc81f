"""The portal's pure parts: the chart, tokens, cursors, headers and its settings."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from worker.errors import ConfigError
from worker.ops import portal
from worker.portal.app import security_headers
from worker.portal.letters import cursor, parse_cursor
from worker.portal.overview import HEIGHT, HOURS, chart
from worker.portal.viewer import Refused
from worker.settings import Settings

NOW = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)


def test_the_chart_has_one_bar_per_hour_scaled_to_the_busiest() -> None:
    hour = NOW.replace(minute=0)
    rows = [
        {"hour": hour, "attempts": 10, "ok": 5},
        {"hour": hour - timedelta(hours=23), "attempts": 4, "ok": 4},
        {"hour": hour - timedelta(hours=30), "attempts": 99, "ok": 0},  # outside: ignored
    ]
    bars = chart(rows, NOW)
    assert len(bars) == HOURS
    assert bars[-1].hour == hour and bars[-1].height == HEIGHT
    assert [b.attempts for b in bars if b.attempts] == [4, 10]
    assert bars[0].ok_height == bars[0].height
    assert bars[-1].ok_height == bars[-1].height / 2
    assert all(b.x < c.x for b, c in itertools.pairwise(bars))


def test_an_empty_chart_draws_no_bar() -> None:
    assert all(b.height == 0 for b in chart([], NOW))


def test_the_csrf_token_belongs_to_one_session() -> None:
    token = portal.csrf_token("whs_a")
    assert portal.check_csrf("whs_a", token)
    assert not portal.check_csrf("whs_b", token)
    assert not portal.check_csrf("whs_a", None)
    assert not portal.check_csrf("whs_a", "")


def test_a_link_url_carries_the_token_under_the_public_base() -> None:
    url = portal.link_url("https://hooks.example.com/portal/", "whp_x-y_z")
    parts = urlsplit(url)
    assert parts.path == "/portal/enter"
    assert parse_qs(parts.query) == {"token": ["whp_x-y_z"]}


def test_dead_letter_cursors_round_trip_and_refuse_garbage() -> None:
    row = {"died_at": NOW, "delivery_id": 42}
    assert parse_cursor(cursor(row)) == (NOW, 42)
    for bad in ("", "x_1", "2026-12-03T10:30:00_1", f"{NOW.isoformat()}_0", "_"):
        with pytest.raises(Refused):
            parse_cursor(bad)


def test_headers_name_the_logo_origin_and_the_framing_sites() -> None:
    plain = security_headers(Settings())
    assert "frame-ancestors 'none'" in plain["content-security-policy"]
    assert "img-src 'self';" in plain["content-security-policy"]
    framed = security_headers(
        Settings(
            portal_logo_url="https://cdn.example.com/a/logo.svg",
            portal_frame_ancestors=("https://app.example.com", "https://b.example.com"),
        )
    )
    policy = framed["content-security-policy"]
    assert "img-src 'self' https://cdn.example.com;" in policy
    assert "frame-ancestors https://app.example.com https://b.example.com" in policy


def test_portal_settings_are_read_and_checked() -> None:
    conf = Settings.from_env(
        {
            "WEBHOOKS_PORTAL_ACCENT": "#AA00ff",
            "WEBHOOKS_PORTAL_FRAME_ANCESTORS": "https://a.example.com, https://b.example.com:8443",
            "WEBHOOKS_PORTAL_URL": "https://hooks.example.com/portal/",
            "WEBHOOKS_PORTAL_SESSION_TTL": "1h",
            "WEBHOOKS_PORTAL_LINK_TTL": "5m",
        }
    )
    assert conf.portal_accent == "#aa00ff"
    assert conf.portal_frame_ancestors == ("https://a.example.com", "https://b.example.com:8443")
    assert conf.portal_url == "https://hooks.example.com/portal"
    assert (conf.portal_session_ttl, conf.portal_link_ttl) == (3600.0, 300.0)
    for name, value in (
        ("WEBHOOKS_PORTAL_ACCENT", "red; } body { display: none"),
        ("WEBHOOKS_PORTAL_FRAME_ANCESTORS", "*"),
        ("WEBHOOKS_PORTAL_FRAME_ANCESTORS", "https://a.example.com/path"),
        ("WEBHOOKS_PORTAL_URL", "javascript:alert(1)"),
        ("WEBHOOKS_PORTAL_LOGO_URL", "data:image/png;base64,AAAA"),
        ("WEBHOOKS_PORTAL_SESSION_TTL", "forever"),
        ("WEBHOOKS_PORTAL_NAME", "x" * 61),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
