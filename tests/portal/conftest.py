"""A real Chromium (Debian's, driven by Playwright), the portal's server and a pipeline."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline import Pipeline
from tests.portal.server import Server, portal_server
from tests.receiver import Receiver, running_receiver

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parents[2]
#: Screenshots go to docs/portal/ only when asked, so a CI run rewrites no file.
SCREENSHOTS = os.environ.get("WEBHOOKS_SCREENSHOTS") == "1"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_context(chromium: Any) -> Callable[..., Any]:
    """Open browser contexts (a person each: their own cookies), closed after the test."""
    opened: list[Any] = []

    def make(**options: Any) -> Any:
        context = chromium.new_context(**{"viewport": {"width": 1200, "height": 900}, **options})
        context.set_default_timeout(30_000)
        opened.append(context)
        return context

    yield make  # type: ignore[misc]
    for context in opened:
        context.close()


@pytest.fixture
def server(db_url: str, redis_url: str) -> Iterator[Server]:
    with portal_server(
        db_url, redis_url, retry_schedule=(0, 0.2, 0.4), portal_name="Acme Webhooks"
    ) as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def pipeline(db_url: str, redis_url: str) -> Iterator[Pipeline]:
    p = Pipeline(db_url, redis_url)
    yield p
    p.stop()


def screenshot(page: Any, name: str, full_page: bool = True) -> None:
    """Save the page as docs/portal/<name>.png when WEBHOOKS_SCREENSHOTS=1."""
    if SCREENSHOTS:
        target = ROOT / "docs" / "portal" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=full_page)
