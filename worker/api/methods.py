"""Answer 405 with every method the path serves in ``Allow`` (RFC 9110, section 15.5.6).

Starlette names only the methods of the first route that matched the path, while FastAPI
makes one route per method: ``OPTIONS /v1/events`` would say ``Allow: POST`` though the
path serves GET too.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from worker.api.problems import Problem, answer

#: The methods a path may be served with, in the order ``Allow`` lists them.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed(request: Request) -> list[str]:
    """Return the methods the request's path is served with, by any route of the app."""
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


def install(app: FastAPI) -> None:
    """Register the 405 handler that lists the path's methods in ``Allow``."""

    async def on_405(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed(request))}
        return answer(Problem(405, str(exc.detail), headers=headers))

    app.add_exception_handler(405, on_405)
