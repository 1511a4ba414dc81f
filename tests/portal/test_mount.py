"""The portal mounts alone in another ASGI application, at any path."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.daemons import free_port
from tests.portal.server import settings_for
from worker.api.auth import Services
from worker.portal import create_portal


@pytest.fixture
def mounted(db_url: str, redis_url: str) -> Iterator[tuple[str, Services]]:
    port = free_port()
    services = Services(
        settings_for(db_url, redis_url, port, portal_url=f"http://127.0.0.1:{port}/hooks/portal")
    )
    host = FastAPI()

    @host.get("/")
    def home() -> dict[str, str]:
        return {"app": "the platform's own"}

    portal = create_portal(services)

    @portal.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")  # a bug in a page, as the crash test needs one

    host.mount("/hooks/portal", portal)
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", services
    finally:
        server.should_exit = True
        thread.join(30)
        services.close()


def test_a_portal_mounted_elsewhere_links_and_scopes_its_cookie_to_its_path(
    mounted: tuple[str, Services],
) -> None:
    base, services = mounted
    made = services.portal_link("acme")
    assert made.url.startswith(base + "/hooks/portal/enter?token=whp_")
    client = httpx.Client()
    opened = client.get(made.url)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/hooks/portal/"
    assert "Path=/hooks/portal" in opened.headers["set-cookie"]
    home = client.get(base + "/hooks/portal/")
    assert home.status_code == 200
    links = set(re.findall(r'(?:href|src|action)="([^"#]+)"', home.text))
    assert links and all(link.startswith("/hooks/portal/") for link in links), links
    assert client.get(base + "/hooks/portal/static/portal.css").status_code == 200
    assert client.get(base + "/").json() == {"app": "the platform's own"}


def test_a_crash_is_a_page_with_the_security_headers_not_a_traceback(
    mounted: tuple[str, Services],
) -> None:
    base, _ = mounted
    answer = httpx.get(base + "/hooks/portal/boom")
    assert answer.status_code == 500
    assert "Something went wrong" in answer.text and "a bug" not in answer.text
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
