"""`webhooks bench` runs the whole pipeline, loses nothing, reports every figure, cleans up.

Correctness only: timings on a shared test machine mean nothing, so none is asserted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import redis

from worker.bench import (
    CPU_ROLES,
    ReceiverProcess,
    Tally,
    hmac_signature,
    percentile,
    render,
    signing_key,
)
from worker.bench.rig import find_services

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "publish_per_s",
    "publish_many_per_s",
    "relay_per_s",
    "end_to_end_per_s",
    "ceiling_per_s",
)


def run_bench(admin_url: str, redis_base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=admin_url, REDIS_URL=redis_base_url)
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "bench", "--json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_tiny_bench_delivers_everything_reports_every_figure_and_cleans_up(
    admin_url: str, redis_base_url: str
) -> None:
    done = run_bench(
        admin_url,
        redis_base_url,
        *("--events", "200", "--endpoints", "2", "--processes", "1", "--threads", "2"),
        *("--rate", "50", "--duration", "1s", "--repeats", "1", "--single-events", "50"),
        *("--fail-rate", "0.1", "--backlog", "100"),
        *("--receiver-delay", "20ms", "--concurrency", "16"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    for name in FIGURES:
        assert result[name]["median"] > 0, name
    assert result["relay_backlog_per_s"]["median"] > 0
    assert result["pipeline_ratio"] > 0
    assert result["options"]["receiver_delay"] == 0.02
    assert result["options"]["concurrency"] == 16

    # The ceiling is the best of 8 and 32 threads per process; the ratio is against it.
    by_threads = result["ceiling_by_threads_per_s"]
    assert set(by_threads) == {"8", "32"} and all(f["median"] > 0 for f in by_threads.values())
    best = max(f["median"] for f in by_threads.values())
    assert result["ceiling_per_s"]["median"] == best
    assert result["pipeline_ratio"] == round(result["end_to_end_per_s"]["median"] / best, 3)

    # What the end-to-end phase held: requests in flight at the receiver, worker connections.
    in_flight = result["in_flight"]
    assert in_flight["peak"]["median"] >= 1
    assert 0 <= in_flight["mean"]["median"] <= in_flight["peak"]["median"]
    pg = result["worker_pg_connections"]
    assert pg["peak"]["median"] >= 1 and 0 < pg["mean"]["median"] <= pg["peak"]["median"]
    cpu = result["cpu_ms_per_delivery"]
    assert set(cpu) == set(CPU_ROLES) and all(ms >= 0 for ms in cpu.values())
    assert cpu["workers"] > 0
    assert set(result["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert all(v >= 0 for v in result["latency_ms"].values())
    assert set(result["latency_stages_ms"]) == {"relay", "queue", "http"}
    rss = result["peak_rss_mib"]
    assert rss["relay"] > 0 and rss["relay_alone"] > 0 and rss["relay_backlog"] > 0
    assert rss["worker_processes"] and all(m > 0 for m in rss["worker_processes"])
    # With a slow receiver the targets are the rate and the connections, not the ratio.
    assert set(result["targets"]) == {
        "end_to_end_per_s",
        "worker_pg_connections",
        "relay_per_s",
        "publish_many_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
    }

    checks = result["correctness"]
    assert checks["ok"] and checks["problems"] == []
    assert checks["lost"] == 0
    assert checks["signatures_checked"] > 0 and checks["signatures_bad"] == 0
    (run,) = checks["end_to_end"]
    assert run["expected"] == run["received"] == run["succeeded"] == 400
    assert run["dead"] == run["pending"] == 0
    # Answers of 500 were retried until they succeeded: one attempt per request made.
    assert run["attempts"] == 400 + run["failed_requests"]
    assert checks["latency"]["lost"] == 0
    report = render(result)  # what `webhooks bench` prints without --json
    assert "pipeline / ceiling" in report and "correctness" in report and "FAILED" not in report
    for line in ("receiver delay 20 ms", "in flight at the receiver", "CPU per delivery"):
        assert line in report
    assert "worker Postgres connections" in report and "8: " in report and "32: " in report

    # Its own database is gone and its Redis database is empty again.
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_database where datname = %s", (result["database"],)
        ).fetchone()
    assert row == (0,)
    claimed = result["machine"]["redis_db"]
    assert claimed not in (0, 12, 13)
    scheme_url = redis_base_url.split("?")[0]
    url = (
        f"{scheme_url}?db={claimed}"
        if redis_base_url.startswith("unix")
        else scheme_url.rsplit("/", 1)[0] + f"/{claimed}"
    )
    client = redis.Redis.from_url(url)
    assert client.dbsize() == 0
    client.close()


def test_bad_options_are_a_one_line_usage_error(admin_url: str, redis_base_url: str) -> None:
    for bad in (("--fail-rate", "1.5"), ("--receiver-delay", "11s"), ("--concurrency", "0")):
        done = run_bench(admin_url, redis_base_url, *bad)
        assert done.returncode == 2, bad
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_receiver_verifies_the_standard_webhooks_test_vector() -> None:
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = hmac_signature(
        key, b"msg_p5jXN8AQM9LWM0D4loKWxJek", b"1614265330", b'{"test": 2432232314}'
    )
    assert signature == b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_receiver_counts_duplicates_once_and_flags_bad_signatures() -> None:
    tally = Tally(fail_rate=0.0, verify_every=1)
    tally.keys[b"/e/0"] = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    head = (
        b"POST /e/0 HTTP/1.1\r\nwebhook-id: evt_1\r\nwebhook-timestamp: 1\r\n"
        b"webhook-signature: v1,bogus\r\ncontent-length: 2"
    )
    assert tally.handle(head, b"{}", 1.0).startswith(b"HTTP/1.1 200")
    tally.handle(head, b"{}", 2.0)
    summary = tally.summary()
    assert summary["requests"] == 2 and summary["ok_pairs"] == 1
    assert summary["bad"] == 2 and "signature" in summary["problems"][0]


def test_only_the_pipelines_requests_must_carry_a_fresh_timestamp() -> None:
    # The ceiling signs every request before it starts; a long ceiling is not "bad".
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    tally = Tally(fail_rate=0.0, verify_every=1)
    body = b'{"type":"t","timestamp":"x","data":{}}'
    for path in (b"/e/0", b"/c/0"):
        tally.keys[path] = key
        signature = hmac_signature(key, b"evt_1", b"1000", body).decode()
        head = (
            f"POST {path.decode()} HTTP/1.1\r\nwebhook-id: evt_1\r\nwebhook-timestamp: 1000"
            f"\r\nwebhook-signature: {signature}\r\ncontent-length: {len(body)}"
        ).encode()
        tally.handle(head, body, 1000.0 + 600)
    summary = tally.summary()
    assert summary["bad"] == 1
    assert summary["problems"] == ["/e/0 evt_1: timestamp outside tolerance"]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0


def post(url: str) -> int:
    return httpx.post(url, content=b"{}", timeout=30.0).status_code


def test_a_slow_receiver_holds_many_requests_at_once_and_counts_them_in_flight() -> None:
    receiver = ReceiverProcess(fail_rate=0.0, delay=0.5)
    try:
        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(post, [receiver.url(f"/e/{i}") for i in range(10)]))
        assert codes == [200] * 10
        summary = receiver.summary()
        assert summary["requests"] == 10
        # One request answered at a time would never be more than one in flight.
        assert summary["in_flight_peak"] > 1
        assert summary["in_flight_mean"] > 0
    finally:
        receiver.stop()


def test_a_slow_receiver_answers_every_pipelined_request_on_a_connection() -> None:
    receiver = ReceiverProcess(fail_rate=0.0, delay=0.05)
    request = b"POST /e/0 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
    try:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
            sock.sendall(request * 3)
            answers = b""
            while answers.count(b"HTTP/1.1 200") < 3:
                chunk = sock.recv(4096)
                assert chunk, f"connection closed after {answers!r}"
                answers += chunk
        assert receiver.summary()["requests"] == 3
    finally:
        receiver.stop()


def test_without_redis_url_the_bench_uses_a_redis_of_its_own(admin_url: str) -> None:
    # The bench flushes the Redis database it uses: a Redis merely found listening on this
    # machine (other work's) is never used unasked.
    services = find_services(admin_url, None)
    try:
        assert services.embedded is not None
        assert ":6379/" not in services.redis_base
        assert services.source.endswith(("own redis-server", "embedded redis"))
        client = redis.Redis.from_url(services.redis_base)
        assert client.ping()
        client.close()
    finally:
        assert services.embedded is not None
        services.embedded.stop()


def test_a_named_redis_database_that_is_not_empty_is_refused_and_left_alone(
    admin_url: str, redis_base_url: str, redis_url: str
) -> None:
    db = int(redis_url.rsplit("/", 1)[-1].split("=")[-1])
    client = redis.Redis.from_url(redis_url)
    client.set("someone-elses", "data")
    try:
        done = run_bench(
            admin_url,
            redis_base_url,
            *("--redis-db", str(db), "--events", "20", "--endpoints", "1", "--repeats", "1"),
            *("--processes", "1", "--threads", "2", "--duration", "1s", "--rate", "10"),
            *("--single-events", "5", "--concurrency", "4"),
        )
        assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"Redis database {db} is not empty" in done.stderr
        assert client.get("someone-elses") == b"data"
    finally:
        client.close()
