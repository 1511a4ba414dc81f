"""Serve the API's documentation page, /docs, with every asset from this installation.

Swagger UI comes from the `swagger-ui-bundle-v2` package (a dependency of the `api` extra);
the page's own script is worker/api/static/docs.js. No request leaves for another origin, so
the page works on a network with no way out, and a strict Content-Security-Policy keeps any
other origin's script out of the operator's.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

from worker.api.problems import Problem

_OURS = Path(__file__).parent / "static"
_SWAGGER = Path(str(swagger_ui_path))

#: Each asset the page loads, by the name it is served under: the file and its media type.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui.css": (_SWAGGER / "swagger-ui.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": (_SWAGGER / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "favicon-32x32.png": (_SWAGGER / "favicon-32x32.png", "image/png"),
    "docs.js": (_OURS / "docs.js", "text/javascript; charset=utf-8"),
}

#: Only this origin, for everything. Swagger UI draws a few icons as data: images.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{docs}/swagger-ui.css">
<link rel="icon" type="image/png" href="{docs}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{docs}/swagger-ui-bundle.js"></script>
<script src="{docs}/docs.js"></script>
</body>
</html>
"""


def page(title: str, root_path: str, openapi_url: str) -> str:
    """Return the documentation page of an API mounted at ``root_path``."""
    root = root_path.rstrip("/")
    return _PAGE.format(
        title=html.escape(title),
        docs=html.escape(root + "/docs"),
        openapi=html.escape(root + openapi_url),
    )


def router(title: str, openapi_url: str) -> APIRouter:
    """Return the /docs page and its assets (outside the OpenAPI document)."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/docs")
    def docs_page(request: Request) -> HTMLResponse:
        text = page(title + " - Swagger UI", request.scope.get("root_path", ""), openapi_url)
        return HTMLResponse(text, headers=HEADERS)

    @routes.get("/docs/{name}")
    def docs_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise Problem(404, f"no documentation asset {name!r}")
        path, media_type = ASSETS[name]
        return FileResponse(
            path,
            media_type=media_type,
            headers={**HEADERS, "cache-control": "public, max-age=3600"},
        )

    return routes
