"""Answer every error as an RFC 9457 problem (``application/problem+json``).

Each kind of error has a stable ``type`` URI clients may branch on. The service layer's
typed errors map to 404 (NotFound), 409 (WrongState, ReplayRefused), 413 (PayloadTooLarge),
422 (bad input the library refused) and 503 (Postgres or Redis unavailable); FastAPI's own
validation errors to 422 with the field at fault, malformed JSON to 400. Anything else is
logged with its traceback and answered as a bare 500: no stack trace leaves the process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.errors import InvalidSchema, PayloadTooLarge, PublishError
from worker.errors import (
    Advised,
    ConfigError,
    DatabaseError,
    InvalidEndpoint,
    MigrationError,
    NotFound,
    WebhooksError,
    WrongState,
)
from worker.ops.dlq import ReplayRefused

log = logging.getLogger("webhooks.api")

BASE = "https://webhooks-outbox.dev/problems/"
MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Missing, unknown or revoked API key"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("request-timeout", "Request body too slow"),
    409: ("conflict", "Conflict with the resource's state"),
    413: ("payload-too-large", "Payload too large"),
    422: ("invalid-request", "Invalid request"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class Problem(Exception):
    """Raise from a route to answer with a problem of a given status (and kind)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        default_kind, default_title = _TITLES.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.kind = kind or default_kind
        self.title = title or default_title
        self.errors = errors
        self.headers = headers


def answer(problem: Problem) -> JSONResponse:
    """Return the response of a problem."""
    body: dict[str, Any] = {
        "type": BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return JSONResponse(
        body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers
    )


def from_error(exc: WebhooksError) -> Problem:
    """Map a service-layer error to its problem, worded for an HTTP client.

    An error that advises a `webhooks` command says it with the API's route instead
    (`Advised.api`): an API client has no command line.
    """
    text = exc.api if isinstance(exc, Advised) else str(exc)
    if isinstance(exc, NotFound):
        return Problem(404, text)
    if isinstance(exc, WrongState | ReplayRefused):
        return Problem(409, text, kind="wrong-state")
    if isinstance(exc, PayloadTooLarge):
        return Problem(413, text)
    if isinstance(exc, InvalidEndpoint | PublishError | InvalidSchema):
        field = _field_of(text)
        errors = [{"field": field, "message": text}] if field else None
        return Problem(422, text, kind="invalid-value", errors=errors)
    if isinstance(exc, DatabaseError) and (
        (exc.sqlstate or "").startswith("22") or isinstance(exc.__cause__, psycopg.DataError)
    ):
        # Postgres refused a value (a NUL character, a number out of range): bad input.
        return Problem(422, "a value cannot be stored: " + text, kind="invalid-value")
    if isinstance(exc, MigrationError):
        return Problem(503, text, kind="schema-behind")
    if isinstance(exc, ConfigError):
        log.error("configuration error: %s", text)
        return Problem(503, text, kind="misconfigured")
    # Postgres or Redis unreachable, a push that failed after the commit, ...
    return Problem(503, text)


def _field_of(message: str) -> str | None:
    lower = message.lower()
    for prefix, field in (
        ("url", "url"),
        ("header", "headers"),
        ("event type filter", "event_types"),
        ("filter", "filter"),
        ("event type", "event_type"),
        ("rate limit", "rate_limit"),
        ("description", "description"),
        ("tenant", "tenant"),
        ("idempotency key", "Idempotency-Key"),
        ("payload", "data"),
        ("data", "data"),  # a payload that fails its schema: the path from `data`
        ("status", "status"),
    ):
        if lower.startswith(prefix):
            return field
    return None


def _validation(exc: RequestValidationError) -> Problem:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return Problem(400, "the request body is not valid JSON", kind="malformed-json")
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", ""))})
    return Problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem answer."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return answer(exc)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WebhooksError)
        problem = from_error(exc)
        if problem.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return answer(problem)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return answer(_validation(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return answer(Problem(exc.status_code, str(exc.detail), headers=exc.headers))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return answer(Problem(500, "the server failed to answer; the error is logged"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(WebhooksError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
