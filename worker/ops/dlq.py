"""Inspect and replay dead letters.

A replay gives each selected delivery a fresh attempt budget and age, keeps its event id
(so its `webhook-id` is unchanged, guarantee 5), records who replayed it and when, and
enqueues it. Rows are taken in batches with SKIP LOCKED and marked replayed in the same
transaction, so replaying one selection twice, or from two terminals at once, enqueues each
delivery once; a million dead letters stream through in bounded memory.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from worker.errors import Advised, InvalidEndpoint, NotFound, WebhooksError
from worker.ops import deliveries
from worker.outages import first_line
from worker.queue import LEASE_SECONDS, BrokerError, Queue, as_queue
from worker.store import dlq as rows
from worker.store.db import wrapped_errors
from worker.store.deliveries import attempts
from worker.store.dlq import Letter, ShownLetter
from worker.store.endpoints import close_circuit
from worker.store.engine import order_next_sync

#: Dead letters replayed per transaction.
BATCH = 1000


class ReplayRefused(Advised):
    """Refuse a replay to disabled endpoints unless asked to enable them."""


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on; every field narrows it."""

    ids: tuple[int, ...] = ()
    endpoint_id: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    reason: str | None = None
    tenant_id: str | None = None
    everything: bool = False

    def is_empty(self) -> bool:
        """Tell whether nothing at all was chosen (a replay then needs --all)."""
        return not (
            self.ids
            or self.endpoint_id
            or self.event_type
            or self.since
            or self.reason
            or self.tenant_id
            or self.everything
        )

    def params(self) -> dict[str, Any]:
        """Return the parameters of the filter of every selecting statement of store.dlq."""
        return {
            "ids": list(self.ids) or None,
            "endpoint": deliveries.parse_uuid("endpoint", self.endpoint_id),
            "event_type": self.event_type,
            "since": self.since,
            "reason": self.reason,
            "tenant": self.tenant_id,
        }


def operator() -> str:
    """Return who is replaying, for the replay history (user@host)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name is no reason to refuse a replay
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def list_letters(
    conn: psycopg.Connection[Any],
    selection: Selection,
    *,
    limit: int = 50,
    offset: int = 0,
    history: bool = False,
    after: tuple[datetime, int] | None = None,
) -> list[Letter]:
    """Return dead letters, newest first (replayed ones too when ``history``).

    ``after`` is (died_at, delivery_id) of the last row of the previous page (keyset).
    """
    after_at, after_id = after if after is not None else (None, None)
    with wrapped_errors():
        return rows.list_rows(
            conn,
            {
                **selection.params(),
                "limit": limit,
                "offset": offset,
                "history": history,
                "after_at": after_at,
                "after_id": after_id,
            },
        )


def show(
    conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None = None
) -> ShownLetter:
    """Return one dead letter with its event, endpoint and every attempt."""
    with wrapped_errors():
        row = rows.shown(conn, delivery_id, tenant_id)
        if row is None:
            raise NotFound("dead letter", delivery_id)
        return replace(row, attempts=attempts(conn, delivery_id))


def count(conn: psycopg.Connection[Any], selection: Selection) -> int:
    """Return how many current dead letters the selection holds."""
    with wrapped_errors():
        return rows.count(conn, selection.params())


@dataclass
class ReplayResult:
    """What a replay did."""

    replayed: int = 0
    enabled_endpoints: tuple[str, ...] = ()
    dry_run: bool = False
    #: In a dry run, the selected endpoints that are disabled: the replay itself needs
    #: ``enable_endpoints`` (``--enable-endpoint``) for them.
    disabled_endpoints: tuple[str, ...] = ()
    #: Replayed deliveries of an ordered endpoint whose key went on without them: a later
    #: event of their key was sent already, so they arrive out of order.
    out_of_order: int = 0


def replay(
    conn: psycopg.Connection[Any],
    broker: Queue | Any | None,
    selection: Selection,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    enable_endpoints: bool = False,
    queue_name: str = "webhooks",
    progress: Callable[[int], None] | None = None,
    by: str | None = None,
) -> ReplayResult:
    """Replay the selected dead letters in batches; return how many were replayed.

    ``by`` names who asked in each dead letter's replay history (default: this process's
    user@host, the operator at a terminal).
    """
    if selection.is_empty():
        raise InvalidEndpoint("choose dead letters to replay (--id, --endpoint, ... or --all)")
    if limit is not None and limit <= 0:
        raise InvalidEndpoint("--limit must be positive")
    params = selection.params()
    # A dry run counts whatever the endpoints' state: it is how an operator sizes a replay
    # before fixing and enabling them, and it says which ones are disabled.
    disabled = _disabled_endpoints(conn, selection, params, enable_endpoints or dry_run)
    if dry_run:
        total = count(conn, selection)
        return ReplayResult(
            min(total, limit) if limit else total,
            dry_run=True,
            disabled_endpoints=tuple(disabled),
        )
    result = ReplayResult(enabled_endpoints=tuple(disabled))
    _open_endpoints(conn, selection, params, disabled)
    if broker is None:
        raise WebhooksError("a broker connection is needed to replay")
    target = as_queue(broker, queue_name)
    for items, overtaken in _batches(conn, params, limit, by or operator()):
        # Committed before the push: if the push fails, the relay's scheduler re-enqueues
        # these deliveries once their lease has passed, so none is lost.
        result.replayed += len(items)
        result.out_of_order += overtaken
        try:
            target.enqueue(items)
        except BrokerError as exc:
            raise WebhooksError(
                f"replayed {result.replayed} in Postgres; could not enqueue them ("
                f"{first_line(exc)}): the relay will enqueue them within its lease"
            ) from exc
        if progress is not None:
            progress(len(items))
    return result


def _disabled_endpoints(
    conn: psycopg.Connection[Any], selection: Selection, params: dict[str, Any], enable: bool
) -> list[str]:
    """Return the disabled endpoints of the selection (which ``enable`` allows), else raise.

    An id that names no current dead letter is refused too, before anything is written.
    """
    with wrapped_errors():
        if selection.ids:
            unknown = sorted(set(selection.ids) - rows.current_ids(conn, params))
            if unknown:
                raise NotFound("current dead letter", ", ".join(map(str, unknown)))
        disabled = rows.disabled_endpoints(conn, params)
    if disabled and not enable:
        names = ", ".join(f"{r.id} ({r.url})" for r in disabled[:5])
        refused = f"{len(disabled)} selected endpoint(s) are disabled: {names}; fix them and "
        raise ReplayRefused(
            refused + "pass --enable-endpoint to enable them and replay",
            api=refused + 'send "enable_endpoints": true to enable them and replay',
        )
    return [r.id for r in disabled]


def _open_endpoints(
    conn: psycopg.Connection[Any], selection: Selection, params: dict[str, Any], disabled: list[str]
) -> None:
    """Enable the ``disabled`` endpoints, and close the circuit of the one replayed."""
    with wrapped_errors():
        if disabled:
            rows.enable_endpoints(conn, disabled)
        if selection.endpoint_id:
            # Replaying an endpoint's dead letters says it is fixed: close its circuit, so
            # they (and whatever waits behind it) go now rather than at the next probe.
            close_circuit(conn, params["endpoint"], selection.tenant_id)


def _batches(
    conn: psycopg.Connection[Any], params: dict[str, Any], limit: int | None, by: str
) -> Iterator[tuple[list[tuple[int, str]], int]]:
    left = limit
    while left is None or left > 0:
        size = BATCH if left is None else min(BATCH, left)
        with wrapped_errors(), conn.transaction():
            batch = rows.replay_batch(
                conn,
                {
                    **params,
                    "batch": size,
                    "by": by,
                    "lease": LEASE_SECONDS,
                    "trigger": "replay",
                },
            )
        marked = batch[0].marked if batch else 0
        items = [(r.id, r.message_id) for r in batch if r.id is not None and r.message_id]
        if marked == 0:
            return
        if left is not None:
            left -= marked
        yield items, sum(1 for r in batch if r.out_of_order)


@dataclass
class DiscardResult:
    """What a discard did: dead letters given up, and later deliveries of their ordering
    keys woken (WEBHOOKS_ORDERED_ON_DEATH=block: a discarded head lets its key go on)."""

    discarded: int = 0
    woken: int = 0
    dry_run: bool = False


def discard(
    conn: psycopg.Connection[Any],
    broker: Queue | Any | None,
    selection: Selection,
    *,
    dry_run: bool = False,
    queue_name: str = "webhooks",
    by: str | None = None,
) -> DiscardResult:
    """Give up the selected dead letters for good, and let their ordering keys go on.

    They leave the current dead letters (lists show them with ``history``); a replay no
    longer takes them. The next delivery of each of their ordering keys is woken and
    enqueued (a lost push: the relay enqueues it when its lease ends).
    """
    if selection.is_empty():
        raise InvalidEndpoint("choose dead letters to discard (--id, --endpoint, ... or --all)")
    params = selection.params()
    with wrapped_errors():
        if selection.ids:
            unknown = sorted(set(selection.ids) - rows.current_ids(conn, params))
            if unknown:
                raise NotFound("current dead letter", ", ".join(map(str, unknown)))
        if dry_run:
            return DiscardResult(count(conn, selection), dry_run=True)
    if broker is None:
        raise WebhooksError("a broker connection is needed to discard")
    target = as_queue(broker, queue_name)
    result = DiscardResult()
    who = by or operator()
    while True:
        with wrapped_errors(), conn.transaction():
            ids = rows.discard_batch(conn, {**params, "batch": BATCH, "by": who})
            woken = order_next_sync(conn, ids, LEASE_SECONDS) if ids else []
        if not ids:
            return result
        result.discarded += len(ids)
        result.woken += len(woken)
        if woken:
            try:
                target.enqueue([(w.id, w.message_id) for w in woken])
            except BrokerError as exc:
                raise WebhooksError(
                    f"discarded {result.discarded}; could not enqueue the deliveries they held"
                    f" up ({first_line(exc)}): the relay will enqueue them within its lease"
                ) from exc
