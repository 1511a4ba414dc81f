"""Render the portal's pages: one Jinja2 environment (autoescape on) over templates/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from worker.portal.viewer import Viewer
from worker.settings import Settings


def moment(value: datetime | None) -> str:
    """Return a time as the portal shows it: in UTC, and saying so."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    """Return a JSON value indented for reading."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


class Pages:
    """The templates, with the branding every page shows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=PackageLoader("worker.portal", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["moment"] = moment
        self.env.filters["pretty"] = pretty
        self.env.filters["ms"] = milliseconds

    def render(
        self,
        template: str,
        viewer: Viewer | None,
        *,
        base: str = "",
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """Answer with ``template`` rendered for ``viewer`` (None: no session, no navigation)."""
        context.setdefault("notice", None)
        page = self.env.get_template(template).render(
            v=viewer,
            base=viewer.base if viewer is not None else base,
            name=self.settings.portal_name,
            logo=self.settings.portal_logo_url,
            **context,
        )
        return HTMLResponse(page, status_code=status)
