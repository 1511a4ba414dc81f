"""Register, inspect and manage endpoints: the Python API behind `webhooks endpoint`."""

from __future__ import annotations

import enum
import logging
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
import yarl
from psycopg.types.json import Jsonb

from producers import publish
from producers.ids import uuid7
from producers.publish import _EVENT_TYPE, _TENANT, MAX_EVENT_TYPE, MAX_TENANT
from worker.engine.dns import Resolver, resolve
from worker.errors import BlockedDestination, ConfigError, InvalidEndpoint, NotFound
from worker.policy import operations
from worker.policy.guard import check_address, parse_ip_literal
from worker.policy.signing import generate_secret
from worker.settings import IPNetwork
from worker.store import queries
from worker.store.db import wrapped_errors
from worker.store.vault import PREFIX, Vault

log = logging.getLogger("webhooks.endpoints")

MAX_URL = 2048
#: Seconds `check_destination` waits for a host name to resolve before saying it did not.
RESOLVE_TIMEOUT = 3.0
MAX_HEADERS = 32
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the delivery itself sets or that belong to the connection: never overridable.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "user-agent",
        "expect",
    }
)


class Unchanged(enum.Enum):
    """The type of `UNCHANGED`: an argument of `Endpoints.update` that was not given."""

    UNCHANGED = "unchanged"


#: Keep the current value (where None has a meaning of its own: all types, no limit).
UNCHANGED = Unchanged.UNCHANGED


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as operators see it (secrets are never part of it)."""

    id: str
    tenant_id: str
    url: str
    description: str
    event_types: tuple[str, ...] | None
    headers: dict[str, str]
    rate_limit: int | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    secrets: int
    consecutive_failures: int = 0
    #: None while the circuit is closed; while open, when the next probe may go.
    circuit_open_until: datetime | None = None
    circuit_probing: bool = False

    @property
    def circuit(self) -> str:
        """Return the circuit's state as operators read it."""
        if self.circuit_open_until is None:
            return "closed"
        if self.circuit_probing:
            return "probing"
        return f"open until {self.circuit_open_until:%Y-%m-%d %H:%M:%S} UTC"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Endpoint:
        """Build from a webhooks.endpoints row."""
        types = row["event_types"]
        return cls(
            id=str(row["id"]),
            tenant_id=row["tenant_id"],
            url=row["url"],
            description=row["description"],
            event_types=tuple(types) if types is not None else None,
            headers=dict(row["headers"]),
            rate_limit=row["rate_limit"],
            enabled=row["enabled"],
            disabled_reason=row["disabled_reason"],
            disabled_at=row["disabled_at"],
            failing_since=row["failing_since"],
            created_at=row["created_at"],
            secrets=len(row["secrets"]),
            consecutive_failures=row["consecutive_failures"],
            circuit_open_until=row["circuit_open_until"],
            circuit_probing=row["circuit_probe_until"] is not None
            and row["circuit_probe_until"] > datetime.now(UTC),
        )


@dataclass(frozen=True)
class Dependents:
    """What goes with an endpoint when it is deleted."""

    deliveries: int
    pending: int
    dead_letters: int

    def describe(self) -> str:
        """Return e.g. ``3 deliveries (1 pending) and 2 dead letters``."""
        return (
            f"{_plural(self.deliveries, 'delivery', 'deliveries')} ({self.pending} pending) "
            f"and {_plural(self.dead_letters, 'dead letter', 'dead letters')}"
        )


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def validate_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL with a host and no credentials, else raise."""
    if not isinstance(url, str) or not url:
        raise InvalidEndpoint("URL is empty")
    if len(url) > MAX_URL:
        raise InvalidEndpoint(f"URL is longer than {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidEndpoint("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidEndpoint(f"URL is malformed: {exc}") from exc
    if not parts.scheme:
        raise InvalidEndpoint(f"URL must start with http:// or https://, got {url!r}")
    if parts.scheme not in ("http", "https"):
        raise InvalidEndpoint(f"URL must use http or https, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidEndpoint("URL must not contain credentials (use --header instead)")
    if not parts.hostname:
        raise InvalidEndpoint("URL has no host")
    if port == 0:
        raise InvalidEndpoint("URL port must be 1-65535")
    if parts.fragment:
        raise InvalidEndpoint("URL must not contain a #fragment")
    try:
        # The worker's HTTP client (aiohttp, on yarl) parses it again, IDNA host names
        # included: a URL it refuses could never be delivered to, so it is refused here.
        if not yarl.URL(url).raw_host:
            raise ValueError("no host")
    except (ValueError, UnicodeError) as exc:
        raise InvalidEndpoint(f"URL is malformed: {exc}") from exc
    return url


def check_destination(
    url: str,
    allowed: Sequence[IPNetwork],
    resolver: Resolver = socket.getaddrinfo,
    timeout: float = RESOLVE_TIMEOUT,
) -> str | None:
    """Refuse a URL no attempt could ever reach; return a warning for a doubtful host name.

    A host that is an IP literal, or ``localhost``, outside the public addresses and
    ``allowed`` raises InvalidEndpoint: the worker's guard would block every attempt. A host
    name is resolved once: when the guard would block it today (an address not allowed, or
    no address at all), a warning is returned, since DNS may change before the first
    delivery. Every path that sets an endpoint's URL calls this.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = parse_ip_literal(host)
    if literal is not None:
        reason = check_address(literal, allowed)
        if reason is not None:
            raise InvalidEndpoint(_blocked_message(host, reason))
        return None
    local = host == "localhost" or host.endswith(".localhost")
    try:
        _resolve_within(host, port, allowed, resolver, timeout)
    except BlockedDestination as exc:
        if local:
            raise InvalidEndpoint(_blocked_message(host, exc.reason)) from None
        if exc.reason == "does not resolve":
            return f"{host} does not resolve: deliveries fail until it does"
        return (
            f"{host} resolves to a {exc.reason}, outside WEBHOOKS_ALLOWED_NETWORKS:"
            " deliveries are blocked while it does"
        )
    return None


def _blocked_message(host: str, reason: str) -> str:
    return (
        f"URL host {host} is a {reason}, outside WEBHOOKS_ALLOWED_NETWORKS: no delivery"
        " could reach it (add its network to WEBHOOKS_ALLOWED_NETWORKS to allow it)"
    )


def _resolve_within(
    host: str, port: int, allowed: Sequence[IPNetwork], resolver: Resolver, timeout: float
) -> list[str]:
    # getaddrinfo cannot be interrupted: a name server that never answers keeps the thread,
    # not the command.
    pool = ThreadPoolExecutor(1, thread_name_prefix="resolve")
    try:
        return pool.submit(resolve, host, port, allowed, resolver).result(timeout)
    except FutureTimeout:
        raise BlockedDestination(host, "does not resolve") from None
    finally:
        pool.shutdown(wait=False)


def parse_header(text: str) -> tuple[str, str]:
    """Split ``'Name: value'`` into a checked (name, value) pair."""
    name, sep, value = text.partition(":")
    if not sep:
        raise InvalidEndpoint(f"header {text!r} must look like 'Name: value'")
    return validate_header(name.strip(), value.strip())


def validate_header(name: str, value: str) -> tuple[str, str]:
    """Return (name, value) if the header may be sent with every delivery, else raise."""
    if not _TOKEN.fullmatch(name):
        raise InvalidEndpoint(f"header name {name!r} is not a valid HTTP token")
    lower = name.lower()
    if lower.startswith("webhook-") or lower in RESERVED_HEADERS or lower.startswith("proxy-"):
        raise InvalidEndpoint(f"header {name!r} is set by the delivery itself and cannot be set")
    if any(ch in value for ch in "\r\n\x00") or len(value) > 4096:
        raise InvalidEndpoint(f"header {name!r} value has a line break, NUL, or is over 4 KiB")
    if not value.isascii():
        # The HTTP client sends header values as ASCII: any other value would fail every
        # attempt before it is sent, and no attempt would ever be recorded.
        raise InvalidEndpoint(f"header {name!r} value must be ASCII text")
    return name, value


def _check_event_types(types: Iterable[str] | None) -> list[str] | None:
    if types is None:
        return None
    out = []
    for t in types:
        if (
            not isinstance(t, str)
            or not t
            or len(t) > MAX_EVENT_TYPE
            or not _EVENT_TYPE.fullmatch(t)
        ):
            raise InvalidEndpoint(f"event type filter {t!r} is not a valid event type")
        if t not in out:
            out.append(t)
    return out or None


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    checked = dict(validate_header(k, v) for k, v in (headers or {}).items())
    if len(checked) > MAX_HEADERS:
        raise InvalidEndpoint(f"at most {MAX_HEADERS} custom headers")
    return checked


def _check_rate_limit(rate_limit: int | None) -> int | None:
    if rate_limit is not None and (
        not isinstance(rate_limit, int) or isinstance(rate_limit, bool) or rate_limit <= 0
    ):
        raise InvalidEndpoint("rate limit must be a positive number of requests per second")
    return rate_limit


def _check_description(description: str) -> str:
    if not isinstance(description, str) or len(description) > 1000:
        raise InvalidEndpoint("description must be text of at most 1000 characters")
    return description


def _check_tenant(tenant_id: str) -> str:
    if (
        not isinstance(tenant_id, str)
        or not _TENANT.fullmatch(tenant_id)
        or len(tenant_id) > MAX_TENANT
    ):
        raise InvalidEndpoint(f"tenant id {tenant_id!r} is not valid")
    return tenant_id


def _check_id(endpoint_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(endpoint_id))
    except ValueError:
        raise NotFound("endpoint", endpoint_id) from None


class Endpoints:
    """Manage endpoints on an autocommit connection; pass ``tenant_id`` to scope any call.

    ``allowed_networks`` is WEBHOOKS_ALLOWED_NETWORKS: URLs the worker could never reach
    are refused (`check_destination`); ``warn`` receives what is accepted with a doubt.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        vault: Vault,
        *,
        operations_tenant: str = "operations",
        allowed_networks: Sequence[IPNetwork] = (),
        warn: Callable[[str], None] | None = None,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.conn = conn
        self.vault = vault
        self.allowed_networks = tuple(allowed_networks)
        self.warn: Callable[[str], None] = warn or log.warning
        self.resolver = resolver
        #: WEBHOOKS_OPERATIONS_TENANT: disabling an endpoint is announced there.
        self.operations_tenant = operations_tenant

    def check_url(self, url: str) -> str:
        """Return ``url`` if an endpoint may be pointed at it, else raise InvalidEndpoint.

        Every path that sets an endpoint's URL goes through here (`add`, and `_update` when
        it assigns ``url``).
        """
        validate_url(url)
        warning = check_destination(url, self.allowed_networks, self.resolver)
        if warning is not None:
            self.warn(warning)
        return url

    def check_key(self) -> None:
        """Raise ConfigError unless the vault opens every secret already stored.

        Called before any secret is written, so a wrong or missing WEBHOOKS_SECRET_KEY is
        refused instead of sealing a secret the workers cannot open.
        """
        with wrapped_errors():
            rows = self.conn.execute(
                "select s.value->>'secret' as secret from webhooks.endpoints e"
                " cross join lateral jsonb_array_elements(e.secrets) s"
                " where s.value->>'secret' like %s",
                (PREFIX + "%",),
            ).fetchall()
        self.vault.check_opens(row["secret"] for row in rows)

    def add(
        self,
        url: str,
        *,
        tenant_id: str = "default",
        event_types: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
        description: str = "",
    ) -> tuple[Endpoint, str]:
        """Create an endpoint; return it with its signing secret (shown only now)."""
        validate_url(url)
        _check_tenant(tenant_id)
        types = _check_event_types(event_types)
        checked = _check_headers(headers)
        _check_rate_limit(rate_limit)
        _check_description(description)
        self.check_key()
        # After the checks that can refuse, so a warning is never followed by an error.
        self.check_url(url)
        secret = generate_secret()
        with wrapped_errors():
            row = self.conn.execute(
                "insert into webhooks.endpoints"
                " (id, tenant_id, url, description, event_types, secrets, headers, rate_limit)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
                (
                    uuid7(),
                    tenant_id,
                    url,
                    description,
                    types,
                    Jsonb([{"secret": self.vault.seal(secret), "expires_at": None}]),
                    Jsonb(checked),
                    rate_limit,
                ),
            ).fetchone()
        assert row is not None
        return Endpoint.from_row(row), secret

    def update(
        self,
        endpoint_id: str,
        *,
        tenant_id: str | None = None,
        url: str | None = None,
        event_types: Iterable[str] | Unchanged | None = UNCHANGED,
        headers: Mapping[str, str] | Unchanged | None = UNCHANGED,
        rate_limit: int | Unchanged | None = UNCHANGED,
        description: str | None = None,
    ) -> Endpoint:
        """Change what is given and nothing else; return the endpoint as it is now.

        Leaving an argument out keeps its value. ``event_types=None`` delivers every type,
        ``headers=None`` (or ``{}``) removes the custom headers, ``rate_limit=None`` removes
        the limit; the given event types and headers replace the old ones. Everything is
        checked, as by `add`, before anything is written.
        """
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = validate_url(url)
        if not isinstance(event_types, Unchanged):
            changes["event_types"] = _check_event_types(event_types)
        if not isinstance(headers, Unchanged):
            changes["headers"] = Jsonb(_check_headers(headers))
        if not isinstance(rate_limit, Unchanged):
            changes["rate_limit"] = _check_rate_limit(rate_limit)
        if description is not None:
            changes["description"] = _check_description(description)
        if not changes:
            raise InvalidEndpoint("nothing to update")
        # Column names come from the fixed list above, values are parameters.
        assignments = ", ".join(f"{column} = %({column})s" for column in changes)
        return self._update(endpoint_id, tenant_id, assignments, changes)

    def get(self, endpoint_id: str, *, tenant_id: str | None = None) -> Endpoint:
        """Return one endpoint or raise NotFound."""
        return Endpoint.from_row(self._row(endpoint_id, tenant_id))

    def list(
        self, *, tenant_id: str | None = None, after: str | None = None, limit: int | None = None
    ) -> list[Endpoint]:
        """Return endpoints (of one tenant when given), oldest first.

        ``after`` is the id of the last endpoint of the previous page (keyset pagination);
        ``limit`` None returns them all.
        """
        with wrapped_errors():
            rows = self.conn.execute(
                "select * from webhooks.endpoints"
                " where (%(t)s::text is null or tenant_id = %(t)s)"
                " and (%(after)s::uuid is null or id > %(after)s::uuid) order by id"
                " limit %(limit)s",
                {
                    "t": tenant_id,
                    "after": _check_id(after) if after is not None else None,
                    "limit": limit,
                },
            ).fetchall()
        return [Endpoint.from_row(r) for r in rows]

    def health(self, endpoint_id: str, *, tenant_id: str | None = None) -> dict[str, Any]:
        """Return the endpoint's last 24 hours: attempts, success rate, last error, backlog."""
        row = self._row(endpoint_id, tenant_id)
        with wrapped_errors():
            stats = self.conn.execute(
                """
                select count(*) as attempts_24h,
                       count(*) filter (where a.status_code between 200 and 299) as ok_24h,
                       (select max(a2.started_at) from webhooks.attempts a2
                          join webhooks.deliveries d2 on d2.id = a2.delivery_id
                         where d2.endpoint_id = %(id)s and a2.status_code between 200 and 299)
                           as last_success_at,
                       (select d3.last_error from webhooks.deliveries d3
                         where d3.endpoint_id = %(id)s and d3.last_error is not null
                         order by d3.updated_at desc limit 1) as last_error,
                       (select count(*) from webhooks.deliveries d4
                         where d4.endpoint_id = %(id)s and d4.status = 'pending') as pending,
                       (select count(*) from webhooks.dead_letters dl
                         where dl.endpoint_id = %(id)s and dl.replayed_at is null)
                           as dead_letters
                from webhooks.attempts a
                join webhooks.deliveries d on d.id = a.delivery_id
                where d.endpoint_id = %(id)s and a.started_at > now() - interval '24 hours'
                """,
                {"id": row["id"]},
            ).fetchone()
        out = dict(stats or {})
        attempts = int(out.get("attempts_24h") or 0)
        out["success_rate_24h"] = round(int(out["ok_24h"]) / attempts, 4) if attempts else None
        return out

    def disable(
        self,
        endpoint_id: str,
        reason: str = "disabled by operator",
        *,
        tenant_id: str | None = None,
    ) -> tuple[Endpoint, int]:
        """Stop delivering to an endpoint; its pending deliveries move to the dead letters.

        Returns the endpoint and how many deliveries were dead-lettered (reason
        ``endpoint_disabled``); `webhooks dlq replay` brings them back once it is fixed.
        """
        with wrapped_errors(), self.conn.transaction():
            row = self.conn.execute(
                queries.DISABLE_ENDPOINT,
                {"id": _check_id(endpoint_id), "tenant": tenant_id, "reason": reason},
            ).fetchone()
            if (
                row is not None
                and operations.concerns(row["tenant_id"], self.operations_tenant)
                and self.conn.execute(
                    queries.SUBSCRIBED,
                    {"tenant": self.operations_tenant, "type": operations.ENDPOINT_DISABLED},
                ).fetchone()
            ):
                event = operations.endpoint_disabled(row, reason, int(row["dead_lettered"]))
                publish(
                    self.conn,
                    event.event_type,
                    event.payload,
                    tenant_id=self.operations_tenant,
                )
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return Endpoint.from_row(row), int(row["dead_lettered"])

    def enable(self, endpoint_id: str, *, tenant_id: str | None = None) -> Endpoint:
        """Resume delivering to an endpoint; forget its failure streak and close its circuit."""
        with wrapped_errors(), self.conn.transaction():
            ep = self._update(
                endpoint_id,
                tenant_id,
                "enabled = true, disabled_reason = null, disabled_at = null, failing_since = null",
                {},
            )
            self.conn.execute(queries.CLOSE_CIRCUIT, {"id": ep.id, "tenant": None})
        return self.get(ep.id)

    def reset(self, endpoint_id: str, *, tenant_id: str | None = None) -> tuple[Endpoint, int]:
        """Close the endpoint's circuit (the operator says it is fixed) and forget its failures.

        Returns the endpoint and how many deliveries waiting behind the circuit are now due.
        """
        with wrapped_errors():
            row = self.conn.execute(
                queries.CLOSE_CIRCUIT, {"id": _check_id(endpoint_id), "tenant": tenant_id}
            ).fetchone()
        if row is None or not row["endpoints"]:
            raise NotFound("endpoint", endpoint_id)
        return self.get(endpoint_id, tenant_id=tenant_id), int(row["unparked"])

    def rotate_secret(
        self, endpoint_id: str, *, grace: float = 86400.0, tenant_id: str | None = None
    ) -> str:
        """Make a new current secret; the old ones keep signing for ``grace`` seconds."""
        if grace < 0:
            raise InvalidEndpoint("grace must not be negative")
        now = datetime.now(UTC)
        secret = generate_secret()
        with wrapped_errors(), self.conn.transaction():
            row = self._row(endpoint_id, tenant_id, lock=True)
            self.check_key()
            kept = [{"secret": self.vault.seal(secret), "expires_at": None}]
            for old in row["secrets"]:
                expires = old.get("expires_at")
                new_expiry = now + timedelta(seconds=grace)
                if expires is not None:
                    expiry = datetime.fromisoformat(expires)
                    if expiry <= now:
                        continue  # already expired: drop it
                    new_expiry = min(expiry, new_expiry)
                if new_expiry > now:
                    kept.append({"secret": old["secret"], "expires_at": new_expiry.isoformat()})
            self.conn.execute(
                "update webhooks.endpoints set secrets = %s, updated_at = now() where id = %s",
                (Jsonb(kept), row["id"]),
            )
        return secret

    def reencrypt(self) -> int:
        """Seal every stored secret with the vault's first key; return the endpoints changed.

        After it, the keys after the first in WEBHOOKS_SECRET_KEY are no longer needed. One
        transaction: either every secret is sealed again or none is.
        """
        if not self.vault.encrypts:
            raise ConfigError("WEBHOOKS_SECRET_KEY", "not set: there is no key to encrypt with")
        with wrapped_errors(), self.conn.transaction():
            rows = self.conn.execute(
                "select id, secrets from webhooks.endpoints order by id for update"
            ).fetchall()
            self.vault.check_opens(s["secret"] for row in rows for s in row["secrets"])
            for row in rows:
                sealed = [{**s, "secret": self.vault.reseal(s["secret"])} for s in row["secrets"]]
                self.conn.execute(
                    "update webhooks.endpoints set secrets = %s, updated_at = now() where id = %s",
                    (Jsonb(sealed), row["id"]),
                )
        return len(rows)

    def dependents(self, endpoint_id: str, *, tenant_id: str | None = None) -> Dependents:
        """Count the deliveries and dead letters deleting the endpoint would delete."""
        row = self._row(endpoint_id, tenant_id)
        with wrapped_errors():
            return self._count_dependents(row["id"])

    def delete(self, endpoint_id: str, *, tenant_id: str | None = None) -> Dependents:
        """Delete an endpoint with its deliveries, attempts and dead letters; count them."""
        with wrapped_errors(), self.conn.transaction():
            row = self._row(endpoint_id, tenant_id, lock=True)
            gone = self._count_dependents(row["id"])
            self.conn.execute("delete from webhooks.endpoints where id = %s", (row["id"],))
        return gone

    def _count_dependents(self, endpoint_id: uuid.UUID) -> Dependents:
        row = self.conn.execute(
            """
            select (select count(*) from webhooks.deliveries where endpoint_id = %(id)s)
                       as deliveries,
                   (select count(*) from webhooks.deliveries
                     where endpoint_id = %(id)s and status = 'pending') as pending,
                   (select count(*) from webhooks.dead_letters
                     where endpoint_id = %(id)s and replayed_at is null) as dead_letters
            """,
            {"id": endpoint_id},
        ).fetchone()
        assert row is not None
        return Dependents(int(row["deliveries"]), int(row["pending"]), int(row["dead_letters"]))

    def _row(
        self, endpoint_id: str, tenant_id: str | None, *, lock: bool = False
    ) -> dict[str, Any]:
        with wrapped_errors():
            row = self.conn.execute(
                "select * from webhooks.endpoints where id = %(id)s"
                " and (%(t)s::text is null or tenant_id = %(t)s)" + (" for update" if lock else ""),
                {"id": _check_id(endpoint_id), "t": tenant_id},
            ).fetchone()
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return dict(row)

    def _update(
        self, endpoint_id: str, tenant_id: str | None, assignments: str, params: dict[str, Any]
    ) -> Endpoint:
        if "url" in params:
            # A URL change passes the same checks as a new endpoint's URL.
            self.check_url(params["url"])
        with wrapped_errors():
            row = self.conn.execute(
                f"update webhooks.endpoints set {assignments}, updated_at = now()"
                " where id = %(id)s and (%(t)s::text is null or tenant_id = %(t)s) returning *",
                {**params, "id": _check_id(endpoint_id), "t": tenant_id},
            ).fetchone()
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return Endpoint.from_row(row)
