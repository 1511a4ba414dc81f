"""The portal's Event types page in a real Chromium: the platform's catalogue (group,
description, flags, latest schema and example, escaped), then the types published lately
that the catalogue does not name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from producers import publish
from tests.portal.server import Server
from worker.ops import event_types

HOSTILE = "<script>window.owned = 1</script><img src=x onerror='window.owned = 2'>"


def test_the_catalogue_is_listed_with_its_latest_schema_and_example(
    server: Server, browser_context: Callable[..., Any], db_url: str
) -> None:
    v1 = {"type": "object", "properties": {"total": {"type": "number"}}}
    v2 = {
        "type": "object",
        "properties": {"total": {"type": "integer"}, "note": {"type": "string"}},
    }
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        event_types.add(
            conn, "order.paid", description="An order was paid", group="orders", schema=v1
        )
        event_types.update(conn, "order.paid", schema=v2, example={"total": 3, "note": HOSTILE})
        event_types.add(conn, "order.legacy", description=HOSTILE)
        event_types.flag(conn, "order.legacy", "deprecated", True)
        event_types.add(conn, "order.gone")
        event_types.flag(conn, "order.gone", "archived", True)
        with conn.transaction():
            publish(conn, "user.created", {"user": 7}, tenant_id="acme")

    page = browser_context().new_page()
    page.goto(server.link("acme"))
    page.get_by_role("link", name="Event types").click()
    assert page.get_by_role("heading", name="order.paid").is_visible()
    paid = page.locator("section.catalogue").filter(has_text="order.paid")
    assert "orders" in paid.inner_text() and "An order was paid" in paid.inner_text()
    paid.get_by_text("Schema (version 2)").click()
    assert '"note"' in paid.locator("pre.schema").inner_text()
    paid.get_by_text("Example payload").click()
    assert HOSTILE in paid.locator("pre.example").inner_text()  # shown as text, not run

    legacy = page.locator("section.catalogue").filter(has_text="order.legacy")
    assert "deprecated" in legacy.inner_text() and HOSTILE in legacy.inner_text()
    assert (
        "archived" in page.locator("section.catalogue").filter(has_text="order.gone").inner_text()
    )
    assert page.evaluate("window.owned") is None

    # Published lately, unknown to the catalogue: listed after it, with its payload.
    assert page.get_by_role("heading", name="Published, not in the catalogue").is_visible()
    assert page.get_by_role("heading", name="user.created").is_visible()
