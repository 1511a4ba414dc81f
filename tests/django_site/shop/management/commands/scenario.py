"""``manage.py scenario NAME...``: run publishing scenarios; print what each did, as JSON.

tests/integration/test_django.py runs them in processes of their own (the backend is chosen
when Django loads it) and checks the outbox, and the deliveries, from outside. Each
scenario's event types start with a word of its own, so several can share a database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client

from producers import WebhooksError
from producers.django import Event, publish, publish_many
from tests.django_site.shop.models import Order

Result = dict[str, Any]


def refused(call: Callable[[], object]) -> str:
    """Return the name of the webhooks error ``call`` raised ("" when it raised none)."""
    try:
        call()
    except WebhooksError as exc:
        return type(exc).__name__
    return ""


def view_commits() -> Result:
    order = Order.objects.create(customer="ada", amount=Decimal("12.50"))
    answer = Client().post(f"/orders/{order.pk}/pay")
    order.refresh_from_db()
    event = answer.json()["event"]
    return {"status": answer.status_code, "order": order.status, "events": [event]}


def view_fails() -> Result:
    order = Order.objects.create(customer="bob", amount=Decimal("3.00"))
    answer = Client(raise_request_exception=False).post(f"/orders/{order.pk}/pay", {"fail": "1"})
    order.refresh_from_db()
    return {"status": answer.status_code, "order": order.status, "events": []}


def nested() -> Result:
    with transaction.atomic():
        kept = [publish("nested.outer", {"step": 1})]
        try:
            with transaction.atomic():  # a savepoint
                publish("nested.rolled_back", {"step": 2})
                raise RuntimeError("inner block fails")
        except RuntimeError:
            pass
        with transaction.atomic():  # a savepoint released into the outer transaction
            kept.append(publish("nested.inner", {"step": 3}))
        kept += publish_many([("nested.batch", {"step": 4}), ("nested.batch", {"step": 5})])
    try:
        with transaction.atomic():
            publish("nested.outer_fails", {"step": 6})
            with transaction.atomic():
                publish("nested.inner_of_failed", {"step": 7})
            raise RuntimeError("outer block fails")
    except RuntimeError:
        pass
    return {"events": kept}


def autocommit() -> Result:
    outside = refused(lambda: publish("auto.refused", {}))
    many = refused(lambda: publish_many([("auto.refused", {})]))
    allowed = publish("auto.allowed", {}, allow_autocommit=True)
    return {"refused": [outside, many], "events": [allowed]}


def failed_transaction() -> Result:
    found = []
    with transaction.atomic():
        try:
            with connection.cursor() as cursor:
                cursor.execute("select 1/0")
        except DatabaseError:
            pass  # swallowed without a savepoint: Postgres aborted the transaction
        found.append(refused(lambda: publish("failed.db", {})))
    try:
        with transaction.atomic():
            try:
                with transaction.atomic(savepoint=False):
                    raise RuntimeError("no savepoint to roll back to")
            except RuntimeError:
                pass  # Django marked the block for rollback
            found.append(refused(lambda: publish("failed.django", {})))
    except RuntimeError:
        pass
    return {"refused": found, "events": []}


def batch() -> Result:
    with transaction.atomic():
        ids = publish_many(
            [
                Event("batch.item", {"n": 1, "text": 'it\'s "quoted" \\ é'}, "acme", "k-1"),
                ("batch.item", [1, 2, 3]),
                {"event_type": "batch.item", "payload": None, "ordering_key": "o-1"},
                Event("batch.item", {"n": 1}, "acme", "k-1"),  # the same key: the same event
            ]
        )
    with transaction.atomic():
        again = publish("batch.item", {"n": 1}, tenant_id="acme", idempotency_key="k-1")
    return {"events": sorted(set(ids)), "ids": ids, "again": again}


def using_other() -> Result:
    with transaction.atomic():  # "default" only: "other" stays in autocommit
        outside = refused(lambda: publish("other.refused", {}, using="other"))
    with transaction.atomic(using="other"):
        event = publish("other.published", {}, using="other")
        seen_by_default = Order.objects.using("default").count()  # any query on default
    return {"refused": [outside], "events": [event], "default_queries": seen_by_default >= 0}


def catalogue() -> Result:
    with transaction.atomic():
        unknown = refused(lambda: publish("not.in.catalogue", {}, event_types="known"))
    return {"refused": [unknown], "events": []}


def logged() -> Result:
    # DEBUG=True: Django logs each query its cursors run; publish runs through them.
    with transaction.atomic():
        event = publish("logged.event", {"x": 1})
    sql = [q["sql"] for q in connection.queries]
    return {"events": [event], "logged": any("webhooks.outbox" in s for s in sql)}


def backend() -> Result:
    options = connections["default"].settings_dict["OPTIONS"]
    return {
        "driver": connection.Database.__name__,
        "server_side_binding": options.get("server_side_binding") is True,
        "events": [],
    }


SCENARIOS: dict[str, Callable[[], Result]] = {
    "view-commits": view_commits,
    "view-fails": view_fails,
    "nested": nested,
    "autocommit": autocommit,
    "failed-transaction": failed_transaction,
    "batch": batch,
    "using-other": using_other,
    "catalogue": catalogue,
    "logged": logged,
    "backend": backend,
}


class Command(BaseCommand):
    help = "Run one publishing scenario of the tests; print its result as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="+", choices=sorted(SCENARIOS))

    def handle(self, *args: Any, names: list[str], **options: Any) -> None:
        self.stdout.write(json.dumps({name: SCENARIOS[name]() for name in names}))
