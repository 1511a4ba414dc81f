"""Who is looking at the portal: the session behind a request, what it may do, and the
checks every state-changing request passes (session, Origin, anti-forgery token)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from producers.names import MAX_TENANT
from worker.api.auth import Services
from worker.ops import portal

#: The session cookie (HttpOnly) and the admin's chosen tenant (a preference, no secret).
COOKIE = "webhooks_portal"
TENANT_COOKIE = "webhooks_portal_tenant"


class Refused(Exception):
    """Answer a request with an error page: ``status``, a title and one plain sentence."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.title = title
        self.text = text


EXPIRED = Refused(
    401,
    "This link has expired",
    "This link has expired or was already used: ask for a new one.",
)


@dataclass
class Viewer:
    """One request's session: the tenant it acts in and what it may do."""

    session: portal.Session
    token: str
    tenant: str
    #: The root path the portal is mounted at (``/portal``): every link starts with it.
    base: str
    tenants: list[str] = field(default_factory=list)
    form: dict[str, list[str]] = field(default_factory=dict)
    #: The page's path under the portal (``/endpoints/...``): the navigation marks it.
    path: str = "/"

    def section(self, prefix: str) -> bool:
        """Tell whether the page is in the navigation's section ``prefix``."""
        if prefix == "/":
            return self.path == "/"
        return self.path == prefix or self.path.startswith(prefix + "/")

    @property
    def csrf(self) -> str:
        """Return the anti-forgery token every form carries."""
        return portal.csrf_token(self.token)

    @property
    def can_change(self) -> bool:
        return not self.session.read_only

    @property
    def can_see_secrets(self) -> bool:
        return self.session.secrets and not self.session.read_only

    def url(self, path: str) -> str:
        """Return the portal's URL of ``path`` (``/endpoints`` -> ``/portal/endpoints``)."""
        return self.base + path

    def value(self, name: str, default: str = "") -> str:
        """Return one field of the posted form (the first if repeated)."""
        found = self.form.get(name)
        return found[0] if found else default

    def values(self, name: str) -> list[str]:
        """Return every value of a repeated field of the posted form."""
        return list(self.form.get(name, []))

    def require_change(self) -> None:
        """Refuse a change to a read-only session (the server decides, not the buttons)."""
        if self.session.read_only:
            raise Refused(403, "Read-only access", "This session may look but change nothing.")

    def require_secrets(self) -> None:
        """Refuse to reveal or rotate a secret unless the link allowed it."""
        self.require_change()
        if not self.session.secrets:
            raise Refused(
                403, "Secrets are not shown here", "This session may not reveal or rotate secrets."
            )


def base_path(request: Request) -> str:
    """Return the path the portal is mounted at, without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def same_origin(request: Request, public_url: str) -> bool:
    """Tell whether a POST comes from the portal's own pages, as far as the browser says.

    ``Sec-Fetch-Site``, when sent, must be ``same-origin`` (or ``none``: typed by the
    person). ``Origin``, when it names an origin, must be the portal's own. Under the
    portal's ``Referrer-Policy: no-referrer`` a browser sends ``Origin: null`` even from the
    portal's own forms, so ``null`` is left to ``Sec-Fetch-Site`` and to the anti-forgery
    token, which every POST needs anyway.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    public = urlsplit(public_url)
    own = {f"{public.scheme}://{public.netloc}"}
    host = request.headers.get("host")
    if host:
        own.add(f"{request.url.scheme}://{host}")
    return origin in own


#: The dependency every page takes its `Viewer` from.
ViewerDependency = Callable[[Request], Awaitable[Viewer]]


def viewer_dependency(services: Services) -> ViewerDependency:
    """Return the dependency that answers a request's `Viewer` or refuses it.

    POSTs also pass the Origin check and carry the session's anti-forgery token.
    """

    async def viewer(request: Request) -> Viewer:
        token = request.cookies.get(COOKIE, "")
        chosen = request.cookies.get(TENANT_COOKIE, "")[:MAX_TENANT]

        def load() -> tuple[portal.Session | None, list[str]]:
            with services.connection() as conn:
                found = portal.session(conn, token)
                listed = portal.tenants(conn) if found is not None and found.admin else []
            return found, listed

        found, tenants = await run_in_threadpool(load)
        if found is None:
            raise EXPIRED
        if found.tenant_id is not None:
            tenant = found.tenant_id
        else:
            tenant = chosen or (tenants[0] if tenants else "default")
            if tenant not in tenants:
                tenants = sorted({*tenants, tenant})
        base = base_path(request)
        seen = Viewer(found, token, tenant, base, tenants, path=request.url.path[len(base) :])
        if request.method == "POST":
            if not same_origin(request, services.settings.portal_url):
                raise Refused(
                    403, "Request refused", "This form was sent from another site: refused."
                )
            posted = await request.form()
            seen.form = {}
            for key, value in posted.multi_items():
                if isinstance(value, str):
                    seen.form.setdefault(key, []).append(value)
            if not portal.check_csrf(token, seen.value("csrf")):
                raise Refused(
                    403,
                    "Request refused",
                    "This form is stale or was not sent from the portal: reload the page "
                    "and try again.",
                )
        return seen

    return viewer
