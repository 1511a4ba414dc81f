"""An attempt's trace headers go out with it, in place of custom headers of the same name,
and never in place of the delivery's own."""

from __future__ import annotations

import asyncio

from tests.fakes import FakeSender
from tests.unit.test_plan import job
from worker.delivery.attempt import deliver_one
from worker.store.vault import Vault

SECRET = [{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expires_at": None}]
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def sent_headers(trace: dict[str, str] | None, custom: dict[str, str]) -> dict[str, str]:
    sender = FakeSender(200)
    claimed = job(secrets=SECRET, headers=custom)
    finished = asyncio.run(deliver_one(sender, Vault(None), claimed, trace))
    assert finished.outcome.status_code == 200
    (request,) = sender.requests
    return request.headers


def test_trace_headers_are_sent_and_replace_a_custom_one_of_the_same_name() -> None:
    headers = sent_headers(TRACE, {"Traceparent": "00-spoofed", "X-Team": "shop"})
    assert headers["traceparent"] == TRACE["traceparent"]
    assert "Traceparent" not in headers
    assert headers["X-Team"] == "shop"
    assert headers["webhook-id"] == "evt"


def test_without_trace_headers_the_request_is_as_before() -> None:
    for trace in (None, {}):
        headers = sent_headers(trace, {"X-Team": "shop"})
        assert set(headers) == {
            "X-Team",
            "content-type",
            "user-agent",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
