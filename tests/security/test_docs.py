"""/docs is served with every asset from this server, under a strict Content-Security-Policy.

It loaded Swagger UI from cdn.jsdelivr.net: a blank page on a network with no way out, and a
third party's script running in the operator's origin with the operator's API key at hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.security.served import Served, api_process


@pytest.fixture
def served(tmp_path: Path, db_url: str, redis_url: str) -> Iterator[Served]:
    with api_process(tmp_path, DATABASE_URL=db_url, REDIS_URL=redis_url) as s:
        yield s


class References(HTMLParser):
    """Collect every URL an HTML page makes the browser load or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "data-openapi") and value is not None:
                self.urls.append(value)
            if name.startswith("on") or name == "style":
                raise AssertionError(f"inline {name} attribute on <{tag}>")
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def own_path(url: str) -> bool:
    """Tell whether a URL stays on the page's origin: a path, not a scheme or //host."""
    return url.startswith("/") and not url.startswith("//") and ":" not in url


def test_the_docs_page_loads_only_its_own_origin(served: Served) -> None:
    base = f"http://127.0.0.1:{served.port}"
    page = httpx.get(base + "/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "http" not in page.text.lower().replace("http-equiv", "")
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", policy
    assert directives["frame-ancestors"] == "'none'"
    refs = References()
    refs.feed(page.text)
    assert refs.inline_scripts == 0 and refs.urls
    for url in refs.urls:
        assert own_path(url), url
        asset = httpx.get(base + url)
        assert asset.status_code == 200, url
        if url.startswith("/docs/"):
            assert asset.headers["x-content-type-options"] == "nosniff"
        if url.endswith(".css"):
            external = [u for u in re.findall(r"url\(([^)]*)\)", asset.text) if "data:" not in u]
            assert all(own_path(u.strip("'\"")) for u in external), external
    # Swagger UI sends the document to validator.swagger.io for a badge unless told not to.
    starter = httpx.get(base + "/docs/docs.js").text
    assert "validatorUrl: null" in starter and "http" not in starter


def test_the_docs_page_of_a_mounted_app_names_its_mount_prefix(db_url: str) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from worker.api import create_app
    from worker.settings import Settings

    outer = FastAPI()
    inner = create_app(Settings(database_url=db_url))
    outer.mount("/hooks", inner)
    with TestClient(outer) as client:
        page = client.get("/hooks/docs").text
        refs = References()
        refs.feed(page)
        assert refs.urls and all(u.startswith("/hooks/") for u in refs.urls), refs.urls
        assert all(client.get(u).status_code == 200 for u in refs.urls)
    inner.state.services.close()


def test_an_unknown_docs_asset_is_a_404_problem(served: Served) -> None:
    answer = httpx.get(f"http://127.0.0.1:{served.port}/docs/..%2F..%2Fsettings.py")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
