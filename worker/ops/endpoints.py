"""Register, inspect and manage endpoints: the Python API behind `webhooks endpoint`."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from producers.ids import uuid7
from worker.errors import ConfigError, InvalidEndpoint, NotFound
from worker.ops import event_types as event_types_catalogue
from worker.ops.endpoint import UNCHANGED, Dependents, Endpoint, Unchanged
from worker.ops.validation import (
    MAX_HEADERS,
    MAX_URL,
    RESOLVE_TIMEOUT,
    check_description,
    check_destination,
    check_event_types,
    check_filter,
    check_headers,
    check_ordered,
    check_rate_limit,
    check_tenant,
    endpoint_uuid,
    event_type_regex,
    filter_columns,
    parse_header,
    validate_header,
    validate_url,
)
from worker.policy import operations
from worker.policy.destination import Resolver
from worker.policy.headers import RESERVED_HEADERS
from worker.policy.redaction import MARKER, redact
from worker.policy.signing import generate_secret
from worker.settings import IPNetwork
from worker.store import endpoints as rows
from worker.store.announce import announce
from worker.store.db import wrapped_errors
from worker.store.endpoints import EndpointRow, Health
from worker.store.vault import PREFIX, Vault

# The records live in worker.ops.endpoint and the checks in worker.ops.validation; they are
# named here too, where callers first looked for them.
__all__ = [
    "MAX_HEADERS",
    "MAX_URL",
    "RESERVED_HEADERS",
    "RESOLVE_TIMEOUT",
    "UNCHANGED",
    "Dependents",
    "Endpoint",
    "Endpoints",
    "Unchanged",
    "check_destination",
    "parse_header",
    "validate_header",
    "validate_url",
]

log = logging.getLogger("webhooks.endpoints")

#: The fields `Endpoints.update` may change, each a parameter of worker.store.endpoints.update.
_FIELDS = ("url", "event_types", "headers", "rate_limit", "description", "filter", "ordered")
#: The columns behind them (event types come with their regex, a filter with its compiled form).
_COLUMNS = (*_FIELDS, "event_type_regex", "filter_path", "filter_vars")


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

        Called before any secret or custom header is written, so a wrong or missing
        WEBHOOKS_SECRET_KEY is refused instead of sealing a value the workers cannot open.
        """
        with wrapped_errors():
            stored = rows.sealed_secrets(self.conn, PREFIX + "%")
        self.vault.check_opens(stored)

    def add(
        self,
        url: str,
        *,
        tenant_id: str = "default",
        event_types: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
        description: str = "",
        filter: object = None,
        ordered: bool = False,
    ) -> tuple[Endpoint, str]:
        """Create an endpoint; return it with its signing secret (shown only now).

        ``event_types`` may hold patterns (``order.*``, ``*``); ``filter`` is a payload filter
        (`worker.policy.filters`, a JSON object), refused with the path of what is wrong.
        ``ordered`` delivers the events of one ordering key one after another
        (`worker.policy.ordering`).

        The custom header values are sealed like the secret; the endpoint returned shows them
        in full, every later read redacted.
        """
        validate_url(url)
        check_tenant(tenant_id)
        types = check_event_types(event_types)
        flt = check_filter(filter)
        checked = check_headers(headers)
        check_rate_limit(rate_limit)
        check_description(description)
        self.check_key()
        # After the checks that can refuse, so a warning is never followed by an error.
        self.check_url(url)
        secret = generate_secret()
        with wrapped_errors():
            row = rows.insert(
                self.conn,
                {
                    "id": uuid7(),
                    "tenant": tenant_id,
                    "url": url,
                    "description": description,
                    "event_types": types,
                    "event_type_regex": event_type_regex(types),
                    **filter_columns(flt),
                    "secrets": Jsonb([{"secret": self.vault.seal(secret), "expires_at": None}]),
                    "headers": Jsonb(self.vault.seal_headers(checked)),
                    "rate_limit": rate_limit,
                    "ordered": check_ordered(ordered),
                },
            )
        self.warn_archived(types)
        return self._endpoint(row, revealed=checked), secret

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
        filter: object = UNCHANGED,
        ordered: bool | None = None,
    ) -> Endpoint:
        """Change what is given and nothing else; return the endpoint as it is now.

        Leaving an argument out keeps its value. ``event_types=None`` delivers every type,
        ``filter=None`` removes the payload filter,
        ``headers=None`` (or ``{}``) removes the custom headers, ``rate_limit=None`` removes
        the limit; the given event types and headers replace the old ones. ``ordered``
        applies to the events fanned out from then on. Everything is
        checked, as by `add`, before anything is written.

        The endpoint returned shows in full the headers given here (the caller has them
        already), and redacted the ones it kept: an update of something else is no way to
        read them.
        """
        changes: dict[str, Any] = {}
        revealed: dict[str, str] | None = None
        if url is not None:
            changes["url"] = validate_url(url)
        if not isinstance(event_types, Unchanged):
            changes["event_types"] = check_event_types(event_types)
            changes["event_type_regex"] = event_type_regex(changes["event_types"])
        if not isinstance(filter, Unchanged):
            changes.update(filter_columns(check_filter(filter)))
        if not isinstance(headers, Unchanged):
            revealed = check_headers(headers)
            if revealed:
                self.check_key()
            changes["headers"] = Jsonb(self.vault.seal_headers(revealed))
        if not isinstance(rate_limit, Unchanged):
            changes["rate_limit"] = check_rate_limit(rate_limit)
        if description is not None:
            changes["description"] = check_description(description)
        if ordered is not None:
            changes["ordered"] = check_ordered(ordered)
        if not changes:
            raise InvalidEndpoint("nothing to update")
        params: dict[str, Any] = {}
        for field in _FIELDS:
            params[f"set_{field}"] = field in changes
        params.update({name: changes.get(name) for name in _COLUMNS})
        updated = self._update(endpoint_id, tenant_id, rows.update, params, revealed=revealed)
        self.warn_archived(changes.get("event_types"))
        return updated

    def warn_archived(self, event_types: Iterable[str] | None) -> None:
        """Tell (through ``warn``) of subscriptions to types archived in the catalogue."""
        for line in event_types_catalogue.archived_subscriptions(self.conn, event_types or ()):
            self.warn(line)

    def get(self, endpoint_id: str, *, tenant_id: str | None = None) -> Endpoint:
        """Return one endpoint or raise NotFound."""
        return self._endpoint(self._row(endpoint_id, tenant_id))

    def list(
        self, *, tenant_id: str | None = None, after: str | None = None, limit: int | None = None
    ) -> list[Endpoint]:
        """Return endpoints (of one tenant when given), oldest first.

        ``after`` is the id of the last endpoint of the previous page (keyset pagination);
        ``limit`` None returns them all.
        """
        with wrapped_errors():
            found = rows.list_rows(
                self.conn, tenant_id, endpoint_uuid(after) if after is not None else None, limit
            )
        return [self._endpoint(r) for r in found]

    def health(self, endpoint_id: str, *, tenant_id: str | None = None) -> Health:
        """Return the endpoint's last 24 hours: attempts, success rate, last error, backlog."""
        row = self._row(endpoint_id, tenant_id)
        with wrapped_errors():
            return rows.health(self.conn, row.id)

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
            row = rows.disable(self.conn, endpoint_uuid(endpoint_id), tenant_id, reason)
            if row is not None and operations.concerns(row.tenant_id, self.operations_tenant):
                endpoint = operations.Disabled(
                    id=str(row.id),
                    tenant_id=row.tenant_id,
                    url=row.url,
                    disabled_at=row.disabled_at,
                )
                event = operations.endpoint_disabled(endpoint, reason, row.dead_lettered)
                announce(self.conn, [event], self.operations_tenant)
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return self._endpoint(row), row.dead_lettered

    def enable(self, endpoint_id: str, *, tenant_id: str | None = None) -> Endpoint:
        """Resume delivering to an endpoint; forget its failure streak and close its circuit."""
        with wrapped_errors(), self.conn.transaction():
            ep = self._update(endpoint_id, tenant_id, rows.enable, {})
            rows.close_circuit(self.conn, ep.id, None)
        return self.get(ep.id)

    def reset(self, endpoint_id: str, *, tenant_id: str | None = None) -> tuple[Endpoint, int]:
        """Close the endpoint's circuit (the operator says it is fixed) and forget its failures.

        Returns the endpoint and how many deliveries waiting behind the circuit are now due.
        """
        with wrapped_errors():
            closed = rows.close_circuit(self.conn, endpoint_uuid(endpoint_id), tenant_id)
        if not closed.endpoints:
            raise NotFound("endpoint", endpoint_id)
        return self.get(endpoint_id, tenant_id=tenant_id), closed.unparked

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
            for old in row.secrets:
                expires = old.get("expires_at")
                new_expiry = now + timedelta(seconds=grace)
                if expires is not None:
                    expiry = datetime.fromisoformat(expires)
                    if expiry <= now:
                        continue  # already expired: drop it
                    new_expiry = min(expiry, new_expiry)
                if new_expiry > now:
                    kept.append({"secret": old["secret"], "expires_at": new_expiry.isoformat()})
            rows.set_secrets(self.conn, row.id, Jsonb(kept))
        return secret

    def current_secret(self, endpoint_id: str, *, tenant_id: str | None = None) -> str:
        """Return the endpoint's current signing secret, opened (for a permitted reveal)."""
        row = self._row(endpoint_id, tenant_id)
        for stored in row.secrets:
            if stored.get("expires_at") is None:
                return self.vault.open(stored["secret"])
        raise NotFound("current secret of endpoint", endpoint_id)

    def reencrypt(self) -> int:
        """Seal every stored secret and custom header value with the vault's first key.

        Returns the endpoints changed. Values stored plain (written while no key was set,
        or before header values were sealed) are sealed too. After it, the keys after the
        first in WEBHOOKS_SECRET_KEY are no longer needed. One transaction: either every
        value is sealed again or none is.
        """
        if not self.vault.encrypts:
            raise ConfigError("WEBHOOKS_SECRET_KEY", "not set: there is no key to encrypt with")
        with wrapped_errors(), self.conn.transaction():
            found = rows.lock_all_sealed(self.conn)
            self.vault.check_opens(
                [s["secret"] for row in found for s in row.secrets]
                + [value for row in found for value in row.headers.values()]
            )
            for row in found:
                sealed = [{**s, "secret": self.vault.reseal(s["secret"])} for s in row.secrets]
                headers = {name: self.vault.reseal(v) for name, v in row.headers.items()}
                rows.set_sealed(self.conn, row.id, Jsonb(sealed), Jsonb(headers))
        return len(found)

    def dependents(self, endpoint_id: str, *, tenant_id: str | None = None) -> Dependents:
        """Count the deliveries and dead letters deleting the endpoint would delete."""
        row = self._row(endpoint_id, tenant_id)
        with wrapped_errors():
            return rows.dependents(self.conn, row.id)

    def delete(self, endpoint_id: str, *, tenant_id: str | None = None) -> Dependents:
        """Delete an endpoint with its deliveries, attempts and dead letters; count them."""
        with wrapped_errors(), self.conn.transaction():
            row = self._row(endpoint_id, tenant_id, lock=True)
            gone = rows.dependents(self.conn, row.id)
            rows.delete(self.conn, row.id)
        return gone

    def _row(self, endpoint_id: str, tenant_id: str | None, *, lock: bool = False) -> EndpointRow:
        with wrapped_errors():
            row = rows.get(self.conn, endpoint_uuid(endpoint_id), tenant_id, lock=lock)
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return row

    def _endpoint(self, row: EndpointRow, *, revealed: dict[str, str] | None = None) -> Endpoint:
        """Return the endpoint of a row, its headers ``revealed`` or else opened and redacted."""
        if revealed is not None:
            return Endpoint.from_row(row, revealed)
        return Endpoint.from_row(row, {n: self._shown(v) for n, v in row.headers.items()})

    def _shown(self, stored: str) -> str:
        """Return a stored header value as listings show it: its start, then a marker."""
        try:
            return redact(self.vault.open(stored))
        except ConfigError:
            # Without the key that sealed it, not even its start can be shown; reading an
            # endpoint needs no key, so this is not an error (writing one checks the key).
            return MARKER

    def _update(
        self,
        endpoint_id: str,
        tenant_id: str | None,
        change: Callable[[psycopg.Connection[Any], dict[str, Any]], EndpointRow | None],
        params: dict[str, Any],
        *,
        revealed: dict[str, str] | None = None,
    ) -> Endpoint:
        """Change one endpoint (``change``: `rows.update` or `rows.enable`); return it as now."""
        if params.get("url") is not None:
            # A URL change passes the same checks as a new endpoint's URL.
            self.check_url(params["url"])
        with wrapped_errors():
            row = change(
                self.conn,
                {**params, "id": endpoint_uuid(endpoint_id), "tenant": tenant_id},
            )
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        return self._endpoint(row, revealed=revealed)
