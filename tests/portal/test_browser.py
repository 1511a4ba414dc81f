"""The portal as a person uses it, in a real Chromium: a magic link, endpoints, test events,
deliveries watched to success, a dead letter replayed, a secret rotated; and the refusals
(a link used twice, an expired session, read-only, a form without its token, another
tenant's id). A real server, a real pipeline (relay and workers), a real receiver."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg

from tests.pipeline import Pipeline
from tests.portal.conftest import screenshot
from tests.portal.server import Server, csrf_of
from tests.receiver import Receiver, ok, status

EXPIRED_TEXT = "This link has expired or was already used: ask for a new one."


def secret_on(page: Any) -> str:
    # `count()` does not wait: after a POST it could read the page being left.
    page.locator("#secret").first.wait_for()
    assert page.locator("#secret").count() == 1, page.locator("main").inner_text()
    text = page.locator("#secret").inner_text().strip()
    assert text.startswith("whsec_"), text
    return str(text)


def reload_until(page: Any, text: str, tries: int = 100) -> None:
    """Reload the page until it shows ``text`` (a delivery finishing in the background)."""
    for _ in range(tries):
        if text in page.content():
            return
        page.wait_for_timeout(200)
        page.reload()
    raise AssertionError(f"{page.url} never showed {text!r}")


def test_a_tenant_runs_its_endpoint_from_the_portal(
    server: Server,
    receiver: Receiver,
    pipeline: Pipeline,
    browser_context: Callable[..., Any],
) -> None:
    pipeline.start_relay()
    pipeline.start_worker()
    page = browser_context().new_page()

    # The magic link opens a session and lands on a URL without the token.
    page.goto(server.link("acme"))
    assert page.url == server.portal + "/"
    assert "token" not in page.url
    assert page.get_by_role("heading", name="Overview").is_visible()
    assert "Acme Webhooks" in page.title()

    # Add an endpoint pointing at the receiver; its secret is shown once.
    page.get_by_role("link", name="Endpoints", exact=True).click()
    page.get_by_role("link", name="Add an endpoint").click()
    hook = receiver.url("/hook")
    page.get_by_label("URL").fill(hook)
    page.get_by_label("Description").fill("Order events")
    page.get_by_role("button", name="Add endpoint").click()
    receiver.secrets["/hook"] = secret_on(page)
    screenshot(page, "endpoint")
    edit = page.get_by_role("link", name="Edit").get_attribute("href")
    endpoint_url = server.base + str(edit).removesuffix("/edit")

    # A test event: the attempt is shown, signed with the secret the receiver checks.
    page.get_by_role("button", name="Send a test event").click()
    assert re.search(r"/deliveries/\d+$", page.url)
    assert "succeeded" in page.locator("h1").inner_text()
    attempt = page.locator(".attempt").first
    assert "200" in attempt.inner_text() and "ok" in attempt.inner_text()
    assert receiver.to("/hook")[-1].verified is True
    screenshot(page, "delivery")

    # A published event is delivered; the event log shows it succeed.
    event_id = pipeline.publish("order.paid", {"order": 42}, tenant_id="acme")
    receiver.wait_for("/hook", 2)
    page.get_by_role("link", name="Event log").click()
    page.get_by_label("Event id").fill(event_id)
    page.get_by_role("button", name="Filter").click()
    reload_until(page, ">succeeded<")
    assert '"order": 42' in page.content()
    page.get_by_role("link", name="Event log").click()
    screenshot(page, "events")

    # One dies (the receiver fails every attempt), then is replayed from the dead letters.
    receiver.on("/hook", status(500))
    dying = pipeline.publish("order.refunded", {"order": 43}, tenant_id="acme")
    pipeline.wait_until(
        lambda: (
            pipeline.value("select count(*) from webhooks.dead_letters where event_id = %s", dying)
            == 1
        ),
        what="the delivery to die",
    )
    receiver.on("/hook", ok)
    page.get_by_role("link", name="Dead letters").click()
    row = page.get_by_role("row").filter(has_text="order.refunded")
    row.get_by_role("checkbox").check()
    screenshot(page, "dead-letters")
    page.get_by_role("button", name="Replay selected…").click()
    assert page.get_by_role("heading", name="Replay 1 dead letter?").is_visible()
    screenshot(page, "replay")
    page.get_by_role("button", name="Replay 1").click()
    assert "1 dead letter(s) sent again." in page.locator(".notice").inner_text()
    pipeline.wait_until(
        lambda: (
            pipeline.value("select status from webhooks.deliveries where event_id = %s", dying)
            == "succeeded"
        ),
        what="the replayed delivery to succeed",
    )

    # Rotate the secret with no grace: the receiver only accepts the new signature.
    page.goto(endpoint_url)
    page.get_by_label("Old secret keeps signing for").select_option("0")
    page.get_by_role("button", name="Rotate secret").click()
    new_secret = secret_on(page)
    assert new_secret != receiver.secrets["/hook"]
    receiver.secrets["/hook"] = new_secret
    page.get_by_role("button", name="Send a test event").click()
    page.wait_for_url(re.compile(r"/deliveries/\d+$"))
    assert "succeeded" in page.locator("h1").inner_text()
    assert receiver.to("/hook")[-1].verified is True

    page.get_by_role("link", name="Overview").click()
    page.get_by_role("heading", name="Overview").wait_for()
    assert page.locator(".chart svg rect").count() == 48
    screenshot(page, "overview")
    page.get_by_role("link", name="Event types").click()
    assert page.get_by_role("heading", name="order.paid").is_visible()
    screenshot(page, "event-types")
    page.get_by_role("link", name="Endpoints", exact=True).click()
    screenshot(page, "endpoints")

    # The same at phone width: nothing wider than the screen.
    phone = browser_context(viewport={"width": 375, "height": 800}).new_page()
    phone.goto(server.link("acme"))
    for path in ("/", "/endpoints", "/events", "/deliveries", "/dead-letters", "/event-types"):
        phone.goto(server.portal + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)
    phone.goto(endpoint_url)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
    screenshot(phone, "phone-endpoint")
    # The keyboard reaches the page: the first Tab lands on the skip link, shown when focused.
    phone.keyboard.press("Tab")
    assert phone.evaluate("document.activeElement.textContent") == "Skip to content"


def test_delete_says_what_goes_and_edit_keeps_the_apis_checks(
    server: Server, receiver: Receiver, browser_context: Callable[..., Any], db_url: str
) -> None:
    page = browser_context().new_page()
    page.goto(server.link("acme"))
    page.goto(server.portal + "/endpoints/new")
    page.get_by_label("URL").fill("http://169.254.169.254/latest")
    page.get_by_role("button", name="Add endpoint").click()
    assert page.get_by_role("alert").is_visible()  # the same destination check as the API
    page.get_by_label("URL").fill(receiver.url("/a"))
    page.get_by_role("button", name="Add endpoint").click()
    page.get_by_role("button", name="Send a test event").click()
    page.get_by_role("link", name=receiver.url("/a")).click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Event types").fill("order.paid\norder.refunded")
    page.get_by_label("Custom headers").fill("X-Team: billing")
    page.get_by_label("Rate limit").fill("10")
    page.get_by_role("button", name="Save").click()
    assert "order.paid, order.refunded" in page.content()
    # Header values carry credentials: shown redacted once written.
    assert "X-Team: (redacted)" in page.content() and "billing" not in page.content()
    # Saved again as shown, the header keeps its value (not the marker).
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Description").fill("billing team")
    page.get_by_role("button", name="Save").click()
    assert "billing team" in page.content()
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("select headers from webhooks.endpoints").fetchone()
    assert stored == ({"X-Team": "billing"},)
    # A redacted value among changed headers is refused, not stored.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Custom headers").fill("X-Team: (redacted)\nX-Other: 1")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("alert").is_visible() and "shown redacted" in page.content()
    page.goto(page.url.removesuffix("/edit"))
    page.get_by_role("button", name="Disable").click()
    assert "disabled in the portal" in page.content()
    page.get_by_role("button", name="Enable").click()
    page.get_by_role("link", name="Delete…").click()
    assert "1 delivery (0 pending) and 0 dead letters" in page.content()
    page.get_by_role("button", name="Delete endpoint and its history").click()
    assert page.url == server.portal + "/endpoints"
    assert "No endpoints yet." in page.content()


def test_a_link_opens_once_and_an_expired_session_says_so(
    server: Server, browser_context: Callable[..., Any], db_url: str
) -> None:
    link = server.link("acme")
    page = browser_context().new_page()
    page.goto(link)
    assert page.get_by_role("heading", name="Overview").is_visible()

    other = browser_context().new_page()
    answer = other.goto(link)
    assert answer is not None and answer.status == 410
    assert EXPIRED_TEXT in other.content()
    screenshot(other, "link-used")

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update webhooks.portal_sessions set expires_at = now() - interval '1s'")
    answer = page.goto(server.portal + "/endpoints")
    assert answer is not None and answer.status == 401
    assert EXPIRED_TEXT in page.content()


def test_a_read_only_session_is_refused_by_the_server(
    server: Server, receiver: Receiver, browser_context: Callable[..., Any]
) -> None:
    with server.services.connection() as conn:
        endpoint = server.services.endpoints(conn).add(receiver.url("/a"), tenant_id="acme")[0]
    context = browser_context()
    page = context.new_page()
    page.goto(server.link("acme", read_only=True))
    assert page.locator(".badge", has_text="read-only").is_visible()
    page.goto(server.portal + f"/endpoints/{endpoint.id}")
    assert page.get_by_role("button").filter(has_text="Rotate").count() == 0
    token = csrf_of(page.content())
    # The buttons are gone, and the server refuses the forms anyway (with the browser's
    # own cookie and a valid anti-forgery token).
    for path, fields in (
        ("/endpoints", {"url": receiver.url("/b")}),
        (f"/endpoints/{endpoint.id}/disable", {}),
        (f"/endpoints/{endpoint.id}/delete", {}),
        (f"/endpoints/{endpoint.id}/rotate", {"grace": "0"}),
        (f"/endpoints/{endpoint.id}/test", {}),
        ("/dead-letters/replay", {"scope": "all", "confirm": "yes"}),
    ):
        answer = context.request.post(
            server.portal + path, form={"csrf": token, **fields}, max_redirects=0
        )
        assert answer.status == 403, path
    assert receiver.to("/a") == []
    answer = page.goto(server.portal + "/endpoints/new")
    assert answer is not None and answer.status == 403
    assert "This session may look but change nothing." in page.content()


def test_a_form_without_its_token_and_another_tenants_id_are_refused(
    server: Server, receiver: Receiver, browser_context: Callable[..., Any]
) -> None:
    with server.services.connection() as conn:
        theirs = server.services.endpoints(conn).add(receiver.url("/t"), tenant_id="globex")[0]
    context = browser_context()
    page = context.new_page()
    page.goto(server.link("acme"))
    page.goto(server.portal + "/endpoints/new")
    # Strip the form's token, as a forged form on another page would lack it, then send it.
    page.locator('input[name="csrf"]').last.evaluate("field => field.remove()")
    page.get_by_label("URL").fill(receiver.url("/x"))
    page.get_by_role("button", name="Add endpoint").click()
    assert "Request refused" in page.content()
    with server.services.connection() as conn:
        assert server.services.endpoints(conn).list(tenant_id="acme") == []

    answer = page.goto(server.portal + f"/endpoints/{theirs.id}")
    assert answer is not None and answer.status == 404
    assert "/t" not in page.locator("main").inner_text()


def test_an_endpoint_takes_patterns_and_a_filter_checked_like_the_apis(
    server: Server, receiver: Receiver, browser_context: Callable[..., Any], db_url: str
) -> None:
    page = browser_context().new_page()
    page.goto(server.link("acme"))
    page.goto(server.portal + "/endpoints/new")
    page.get_by_label("URL").fill(receiver.url("/f"))
    page.get_by_label("Event types").fill("order.*")
    page.get_by_label("Filter").fill('{"data.amount": {"$gt": true}}')
    page.get_by_role("button", name="Add endpoint").click()
    alert = page.get_by_role("alert")
    assert alert.is_visible()
    assert alert.inner_text() == "filter.data.amount.$gt: expected a number or a string, got true"
    page.get_by_label("Filter").fill('{"data.amount": {"$gte": 100}}')
    page.get_by_role("button", name="Add endpoint").click()
    assert "order.*" in page.content() and "$gte" in page.content()
    # Saved again as shown, the filter is kept; emptied, it is removed.
    page.get_by_role("link", name="Edit").click()
    page.get_by_role("button", name="Save").click()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select filter from webhooks.endpoints").fetchone() == (
            {"data.amount": {"$gte": 100}},
        )
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Filter").fill("")
    page.get_by_role("button", name="Save").click()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select filter, filter_path from webhooks.endpoints").fetchone() == (
            None,
            None,
        )


def test_an_endpoint_is_made_ordered_and_back_from_the_form(
    server: Server, receiver: Receiver, browser_context: Callable[..., Any], db_url: str
) -> None:
    page = browser_context().new_page()
    page.goto(server.link("acme"))
    page.goto(server.portal + "/endpoints/new")
    page.get_by_label("URL").fill(receiver.url("/o"))
    page.get_by_label("Ordered").check()
    page.get_by_role("button", name="Add endpoint").click()
    page.get_by_text("one after another per ordering key").wait_for()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select ordered from webhooks.endpoints").fetchone() == (True,)
    # Saved again as shown, it stays ordered; unticked, it is not.
    page.get_by_role("link", name="Edit").click()
    assert page.get_by_label("Ordered").is_checked()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("one after another per ordering key").wait_for()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Ordered").uncheck()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("none: events in parallel").wait_for()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select ordered from webhooks.endpoints").fetchone() == (False,)
