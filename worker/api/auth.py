"""Who is calling the API: `Principal`, the `Services` it runs on, and bearer authentication.

Without a mounting application's own `Auth`, callers present an API key
(``Authorization: Bearer whk_...``) that `Services.authenticate` looks up.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations.
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.api.problems import Problem, answer
from worker.api.slots import Slots, endpoint_tests
from worker.app import App
from worker.errors import NotFound
from worker.observe.health import Readiness
from worker.ops import apikeys
from worker.queue import Queue
from worker.settings import Settings


@dataclass(frozen=True)
class Principal:
    """Who is calling: one tenant's client, or an admin (every tenant)."""

    tenant_id: str | None = None
    admin: bool = False
    name: str = "api"

    def __post_init__(self) -> None:
        if self.admin == (self.tenant_id is not None):
            raise ValueError("a principal is either one tenant's or admin, not both or neither")

    @property
    def key(self) -> tuple[str, str]:
        """Return what this caller's share of a bounded resource is counted by: its tenant,
        or for an admin its name."""
        if self.tenant_id is not None:
            return ("tenant", self.tenant_id)
        return ("admin", self.name)

    def scope(self, tenant: str | None) -> str | None:
        """Return the tenant a call acts in (None: every tenant, admin only).

        A tenant's client naming another tenant learns nothing: the answer is 404, as for
        another tenant's ids.
        """
        if self.admin:
            return tenant
        if tenant is not None and tenant != self.tenant_id:
            raise NotFound("tenant", tenant)
        return self.tenant_id

    def owner(self, tenant: str | None) -> str:
        """Return the tenant a new row belongs to."""
        return self.scope(tenant) or "default"


#: A mounting application's own authentication: the caller of a request, or None (401).
Auth = Callable[[Request], "Principal | Awaitable[Principal | None] | None"]

#: The dependency that answers a request's `Principal` (or refuses it with 401).
CallerDependency = Callable[..., Awaitable[Principal]]

#: Find a request's caller from its headers, or None.
Resolve = Callable[[Request], Awaitable["Principal | None"]]


class Services(App):
    """The API's `App`: a pool of connections, warnings logged, API-key authentication, and
    the slots that bound endpoint tests (`worker.api.slots`).

    The pool opens on first use rather than at startup: a mounted application's lifespan does
    not run the sub-application's, and building the app (for its OpenAPI document) needs no
    database.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, pool_size=10, application_name="webhooks-api")
        self._readiness: Readiness | None = None
        #: Endpoint tests in flight: a few per tenant, fewer in all than the pool's size.
        self.tests: Slots = endpoint_tests(self.settings.request_timeout)

    def broker(self) -> Queue:
        """Return the queue retries, resends and replays push to (the configured broker)."""
        return self.queue()

    def readiness(self) -> Readiness:
        """Return the readiness check of the relay and workers, for this process."""
        with self._lock:
            if self._readiness is None:
                self._readiness = Readiness(
                    self.settings.require_database_url(), self.settings.broker_url
                )
            return self._readiness

    def authenticate(self, header: str | None) -> Principal | None:
        """Return the principal of an ``Authorization: Bearer`` header, or None."""
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        with self.connection() as conn:
            found = apikeys.authenticate(conn, key.strip())
        if found is None:
            return None
        if found.tenant_id is None:
            return Principal(admin=True, name=f"api-key:{found.id}")
        return Principal(tenant_id=found.tenant_id, name=f"api-key:{found.id}")


#: Where `AuthenticateFirst` leaves the caller it found, for the route's dependency.
_FOUND = "webhooks.principal"
#: Methods whose requests carry a body: their caller is known before the body is read.
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def resolver(services: Services, auth: Auth | None) -> Resolve:
    """Return how a request's caller is found: ``auth`` (sync or async), else its API key."""

    async def resolve(request: Request) -> Principal | None:
        if auth is not None:
            found = auth(request)
            if inspect.isawaitable(found):
                found = await found
        else:
            found = await run_in_threadpool(
                services.authenticate, request.headers.get("authorization")
            )
        return found if isinstance(found, Principal) else None

    return resolve


def _unauthorized() -> Problem:
    return Problem(
        401,
        "send a live API key: Authorization: Bearer whk_...",
        headers={"WWW-Authenticate": "Bearer"},
    )


class AuthenticateFirst:
    """Answer 401 to a request with a body before reading the body, unless its caller is known.

    The body cap (`worker.api.limits`) bounds what one request may send; this keeps a client
    with no key from making the process read and parse even that: a stranger's body is never
    read. The caller found is handed to the route, so it is looked up once. A mounting
    application's ``auth`` sees the request's headers here, not its body.
    """

    def __init__(
        self, app: ASGIApp, resolve: Resolve, routes: Sequence[BaseRoute], prefix: str = "/v1/"
    ) -> None:
        self.app = app
        self.resolve = resolve
        self.routes = routes
        self.prefix = prefix

    def _served(self, scope: Scope) -> bool:
        # A method or path no route serves is left to the router (405, 404): no body is read.
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WITH_BODY:
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path.startswith(self.prefix) and self._served(scope):
                found = await self.resolve(Request(scope))  # no receive: the body stays unread
                if found is None:
                    await answer(_unauthorized())(scope, receive, send)
                    return
                scope.setdefault("state", {})[_FOUND] = found
        await self.app(scope, receive, send)


def caller_dependency(resolve: Resolve) -> CallerDependency:
    """Return the dependency every /v1 route takes its caller from.

    The caller `AuthenticateFirst` found already, else the one ``resolve`` finds now. The
    bearer scheme is declared either way, so the OpenAPI document shows how to call.
    """
    bearer = HTTPBearer(auto_error=False, description="An API key: `webhooks api-key create`.")

    async def principal(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        found = request.scope.get("state", {}).get(_FOUND)
        if found is None:
            found = await resolve(request)
        if not isinstance(found, Principal):
            raise _unauthorized()
        return found

    return principal
