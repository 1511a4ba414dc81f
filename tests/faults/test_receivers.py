"""Receivers misbehave in every way a network allows: each delivery ends in the right state.

Delivery rules under test, through the real worker process: 2xx succeeds; 3xx fails and is
never followed (not even to a private address); 410 disables the endpoint; 429 throttles
and honours Retry-After without spending an attempt; timeouts (a receiver that hangs, or
trickles its answer), resets, answers cut short and bad certificates fail and retry; the
response body is read up to 16 KiB and no further, so a 100 MB answer costs no memory.
"""

from __future__ import annotations

import socket
import threading
from contextlib import ExitStack
from pathlib import Path

from producers import Event
from tests.faults.harness import Cluster, peak_rss_mib
from tests.faults.receivers import (
    HUNDRED_MB,
    RawServer,
    close_mid_response,
    flood,
    hang_before_headers,
    read_request,
    redirect_to,
    reset,
    respond,
    self_signed_tls,
    trickle_body,
)

METADATA = "http://169.254.169.254/latest/meta-data/"


def throttle_twice() -> RawServer:
    count = [0]
    lock = threading.Lock()

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        with lock:
            count[0] += 1
            n = count[0]
        if n <= 2:
            head = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
        else:
            head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        conn.sendall((head + "Connection: close\r\n\r\n").encode() + (b"ok" if n > 2 else b""))

    return RawServer(handler)


def test_misbehaving_receivers_end_in_the_right_state(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    c.settings_env["WEBHOOKS_RETRY_SCHEDULE"] = "0s,1s,1s"
    c.settings_env["WEBHOOKS_REQUEST_TIMEOUT"] = "2s"
    flooded = [0]
    redirected: list[str] = []
    with ExitStack() as stack:

        def serve(server: RawServer) -> RawServer:
            stack.callback(server.close)
            return server

        servers = {
            "500": serve(RawServer(respond("500 Internal Server Error", b"boom"))),
            "429": serve(throttle_twice()),
            "410": serve(RawServer(respond("410 Gone"))),
            "302 private": serve(RawServer(redirect_to(METADATA, redirected))),
            "hang": serve(RawServer(hang_before_headers)),
            "trickle": serve(RawServer(trickle_body)),
            "100 MB": serve(RawServer(flood(flooded))),
            "reset": serve(RawServer(reset)),
            "close early": serve(RawServer(close_mid_response)),
            "bad tls": serve(RawServer(respond("200 OK"), tls=self_signed_tls(tmp_path))),
        }
        same_host = serve(RawServer(respond("200 OK")))
        servers["302 same host"] = serve(
            RawServer(redirect_to(same_host.url("/target"), redirected))
        )
        endpoints = {}
        for name, server in servers.items():
            scheme = "https" if name == "bad tls" else "http"
            types = ["probe", "big"] if name == "100 MB" else ["probe"]
            endpoints[name], _ = c.endpoint(server.url(scheme=scheme), event_types=types)

        worker = c.start_worker(threads=4)
        c.start_relay(lease="2s")
        c.wait_until(lambda: len(worker.descendants()) >= 2, 30, "the worker processes")
        c.publish([Event("probe", {"n": 1}), *(Event("big", {"n": i}) for i in range(4))])
        c.settle(90)
        peaks = [peak_rss_mib(p.pid) for p in worker.descendants()]

    names = {endpoint: name for name, endpoint in endpoints.items()}
    rows = {
        names[r["endpoint"]]: r
        for r in c.rows(
            "select e.id::text as endpoint, e.enabled, e.disabled_reason,"
            " d.id, d.status, d.dead_reason, d.attempts, d.spent,"
            " array_agg(a.error_kind order by a.number) as kinds,"
            " array_agg(a.status_code order by a.number) as codes,"
            " array_agg(a.error order by a.number) as errors,"
            " max(length(a.response_body)) as body"
            " from webhooks.deliveries d"
            " join webhooks.endpoints e on e.id = d.endpoint_id"
            " join webhooks.outbox o on o.id = d.event_id and o.event_type = 'probe'"
            " left join webhooks.attempts a on a.delivery_id = d.id"
            " group by e.id, d.id"
        )
    }

    def dead_after_three(name: str, kind: str) -> list[str]:
        row = rows[name]
        assert (row["status"], row["dead_reason"], row["attempts"]) == (
            "dead",
            "attempts_exhausted",
            3,
        ), (name, row)
        assert row["kinds"] == [kind] * 3, (name, row["kinds"], row["errors"])
        return list(row["errors"])

    assert rows["500"]["codes"] == [500] * 3
    dead_after_three("500", "http_status")
    assert rows["500"]["body"] == 4  # the receiver's answer is kept for the operator

    throttled = rows["429"]
    assert (throttled["status"], throttled["attempts"], throttled["spent"]) == ("succeeded", 3, 1)
    assert throttled["kinds"] == ["throttled", "throttled", None]

    gone = rows["410"]
    assert (gone["status"], gone["dead_reason"], gone["attempts"]) == (
        "dead",
        "endpoint_disabled",
        1,
    )
    assert gone["kinds"] == ["gone"] and not gone["enabled"]
    assert "410" in gone["disabled_reason"]

    for name in ("302 private", "302 same host"):
        assert rows[name]["codes"] == [302] * 3
        dead_after_three(name, "redirect")
    # Redirects are never followed: the target saw nothing, each redirecting receiver saw
    # only the attempts themselves.
    assert same_host.accepted == 0
    assert len(redirected) == 6 and all(r.startswith("POST /hook ") for r in redirected)

    assert set(dead_after_three("hang", "timeout")) == {"timed out waiting for the response"}
    dead_after_three("trickle", "timeout")
    assert set(dead_after_three("reset", "connect")) == {"connection reset by peer"}
    dead_after_three("close early", "protocol")
    errors = dead_after_three("bad tls", "tls")
    assert all(e.startswith("certificate verify failed") for e in errors), errors

    big = rows["100 MB"]
    assert (big["status"], big["attempts"], big["kinds"]) == ("succeeded", 1, [None])
    assert big["body"] == 16384  # what is kept of the answer
    succeeded = "select count(*) from webhooks.deliveries where endpoint_id = %s and status = %s"
    assert c.value(succeeded, endpoints["100 MB"], "succeeded") == 5
    # Five 100 MB answers: the worker read 16 KiB of each and hung up. What the kernel
    # buffered is all the receiver could send; no worker process ever held a body.
    print(f"\n100 MB answers: {flooded[0] / 2**20:.1f} MiB sent in all; worker peaks {peaks} MiB")
    assert flooded[0] < 5 * HUNDRED_MB // 4, flooded[0]
    assert max(peaks) < 130, f"peak RSS of the worker processes: {peaks} MiB"

    c.assert_attempts_consistent()
    c.check()


def test_a_request_that_cannot_be_built_is_a_recorded_failure(cluster: Cluster) -> None:
    """An endpoint row the client cannot encode (here a header stored before the registry
    refused non-ASCII values) fails its attempts and reaches the dead letters; before, the
    exception escaped the worker unrecorded and the delivery went round for days."""
    c = cluster
    c.settings_env["WEBHOOKS_RETRY_SCHEDULE"] = "0s,1s,1s"
    with ExitStack() as stack:
        server = RawServer(respond("200 OK"))
        stack.callback(server.close)
        endpoint, _ = c.endpoint(server.url())
        c.conn.execute(
            "update webhooks.endpoints set headers = %s where id = %s",
            ('{"X-Name": "café"}', endpoint),
        )
        c.start_relay(lease="2s")
        c.start_worker(threads=4)
        c.publish([Event("probe", {})])
        c.settle(60)
        assert server.accepted == 0
    row = c.rows(
        "select d.status, d.dead_reason, d.attempts, array_agg(a.error_kind) as kinds"
        " from webhooks.deliveries d join webhooks.attempts a on a.delivery_id = d.id"
        " group by d.id"
    )
    assert row == [
        {
            "status": "dead",
            "dead_reason": "attempts_exhausted",
            "attempts": 3,
            "kinds": ["protocol"] * 3,
        }
    ]
    c.check()
