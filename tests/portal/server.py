"""Serve the API with its portal on a free loopback port, and open portal sessions."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from tests.daemons import free_port
from tests.pipeline import LOOPBACK
from worker.api import create_app
from worker.api.auth import Services
from worker.settings import Settings

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Server:
    base: str
    services: Services

    @property
    def portal(self) -> str:
        return self.base + "/portal"

    def link(self, tenant: str | None = "acme", **options: Any) -> str:
        """Make a portal link as the platform's backend would (App.portal_link)."""
        return self.services.portal_link(tenant, **options).url

    def session(self, tenant: str | None = "acme", **options: Any) -> httpx.Client:
        """Open a link in a fresh client (cookie jar): a signed-in person."""
        client = httpx.Client(timeout=60)
        answer = client.get(self.link(tenant, **options))
        assert answer.status_code == 303, answer.text
        return client


def settings_for(db_url: str, redis_url: str, port: int, **overrides: Any) -> Settings:
    base = Settings(
        database_url=db_url,
        redis_url=redis_url,
        allowed_networks=LOOPBACK,
        request_timeout=5.0,
        portal_url=f"http://127.0.0.1:{port}/portal",
    )
    return dataclasses.replace(base, **overrides)


@contextmanager
def portal_server(db_url: str, redis_url: str, **overrides: Any) -> Iterator[Server]:
    """Serve `create_app` (the API and /portal) with uvicorn in a thread of this process."""
    port = free_port()
    app = create_app(settings_for(db_url, redis_url, port, **overrides))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield Server(f"http://127.0.0.1:{port}", app.state.services)
    finally:
        server.should_exit = True
        thread.join(30)
        app.state.services.close()


def csrf_of(page: str) -> str:
    """Return the anti-forgery token a portal page's forms carry."""
    found = _CSRF.search(page)
    assert found, "no form with a csrf field on the page"
    return found.group(1)
