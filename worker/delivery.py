"""Make one attempt of one delivery: claim, sign, POST, classify, record.

No database transaction is open during the HTTP call: the claim and the record are each one
short statement, and the lock taken by the claim is a timestamp, not a held row lock.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import redis
from psycopg_pool import ConnectionPool

from worker import queries, retry, signing, transport
from worker.breaker import CircuitBreaker, InFlightLimiter
from worker.endpoints import RESERVED_HEADERS
from worker.errors import WebhooksError
from worker.outcome import Kind, Outcome, classify_error, classify_response
from worker.resilience import TRANSIENT, Outage, retrying
from worker.settings import Settings
from worker.vault import Vault

log = logging.getLogger("webhooks.worker")

USER_AGENT = "webhooks-outbox/0.1 (+Standard Webhooks)"
MAX_RESPONSE_BYTES = 16384
#: Seconds a claim outlives the attempt's deadline, for recording the result.
LOCK_MARGIN = 30.0
#: An endpoint whose attempts take longer than this on average (or that has not answered
#: yet) may hold at most half of a process's threads, so it cannot starve the others.
SLOW_SECONDS = 2.0
#: Every way a receiver or the network can fail an attempt (classified, then recorded).
#: UnicodeError: a stored URL or header the client cannot encode (registered before the
#: registry refused them) fails its attempts instead of escaping unrecorded for ever.
SEND_ERRORS = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    WebhooksError,
    OSError,
    UnicodeError,
)


class Observer(Protocol):
    """Receive what happens to deliveries (metrics implement it)."""

    def attempt(self, outcome: str, seconds: float) -> None: ...
    def succeeded(self, latency: float) -> None: ...
    def dead(self, reason: str) -> None: ...


class _Quiet:
    def attempt(self, outcome: str, seconds: float) -> None:
        pass

    def succeeded(self, latency: float) -> None:
        pass

    def dead(self, reason: str) -> None:
        pass


@dataclass(frozen=True)
class Job:
    """A claimed delivery with what its attempt needs."""

    row: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        return self.row[name]


def envelope(event_type: str, created_at: datetime, payload_json: str) -> bytes:
    """Return the Standard Webhooks body; the stored payload JSON is spliced in as it is."""
    stamp = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return (
        f'{{"type":{json.dumps(event_type)},"timestamp":"{stamp}","data":{payload_json}}}'
    ).encode()


def request_headers(
    custom: Mapping[str, str], event_id: str, timestamp: int, signature: str
) -> dict[str, str]:
    """Return the headers of one attempt; the delivery's own always win over custom ones."""
    headers = {
        k: v
        for k, v in custom.items()
        if not k.lower().startswith("webhook-") and k.lower() not in RESERVED_HEADERS
    }
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
    )
    return headers


def valid_keys(secrets: list[Mapping[str, Any]], vault: Vault, now: datetime) -> list[bytes]:
    """Return the signing keys of every secret not yet expired (several during rotation)."""
    keys = []
    for entry in secrets:
        expires = entry.get("expires_at")
        if expires is not None and datetime.fromisoformat(expires) <= now:
            continue
        keys.append(signing.decode_secret(vault.open(entry["secret"])))
    return keys


class Deliverer:
    """Attempt deliveries; one instance per worker process, shared by its threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: ConnectionPool[Any],
        redis_client: redis.Redis,
        http: transport.Client | None = None,
        vault: Vault | None = None,
        threads: int = 8,
        breaker: CircuitBreaker | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis_client
        self.http = http or transport.build_client(
            allowed_networks=settings.allowed_networks,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            user_agent=USER_AGENT,
        )
        self.vault = vault or Vault(settings.secret_key)
        self.breaker = breaker or CircuitBreaker()
        self.busy = InFlightLimiter(max(1, threads // 2))
        self.observer: Observer = observer or _Quiet()
        self.outage = Outage("Postgres or Redis", log)
        self._latency: dict[str, float] = {}
        self._latency_lock = threading.Lock()

    # -- database, each call one short statement (returning rows) retried on transient errors

    def _execute(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            with self.pool.connection() as conn:
                rows: list[dict[str, Any]] = conn.execute(sql, params).fetchall()
            self.outage.recovered()
            return rows

        # Infrastructure hiccups are retried here and never counted against the receiver.
        # The retry policy is only built once a try has failed: it costs more than a
        # statement's own client-side work.
        try:
            return run()
        except TRANSIENT as exc:
            self.outage.failed(exc)
        result: list[dict[str, Any]] = retrying(self.outage, max_attempts=7)(run)
        return result

    def _claim(self, delivery_id: int, message_id: str) -> Job | None:
        lock = self.settings.request_timeout + LOCK_MARGIN
        rows = self._execute(
            queries.CLAIM, {"id": delivery_id, "message_id": message_id, "lock": lock}
        )
        return Job(rows[0]) if rows else None

    def _release(
        self, job: Job, *, next_at: datetime | None = None, dead_reason: str | None = None
    ) -> None:
        released = self._execute(
            queries.RELEASE,
            {
                "id": job.id,
                "next": next_at,
                "status": "dead" if dead_reason else "pending",
                "dead_reason": dead_reason,
            },
        )
        if dead_reason and released:  # counted once, by whoever made it dead
            self.observer.dead(dead_reason)
            log.info(
                "delivery dead",
                extra={
                    "event_id": job.event_id,
                    "delivery_id": job.id,
                    "endpoint_id": job.endpoint_id,
                    "attempt": job.attempts,
                    "reason": dead_reason,
                },
            )

    def disable_endpoint(self, endpoint_id: str, reason: str) -> int:
        """Disable an endpoint; its pending deliveries become dead letters."""
        rows = self._execute(
            queries.DISABLE_ENDPOINT, {"id": endpoint_id, "tenant": None, "reason": reason}
        )
        moved = int(rows[0]["dead_lettered"]) if rows else 0
        log.warning(
            "endpoint disabled",
            extra={"endpoint_id": endpoint_id, "reason": reason, "dead_lettered": moved},
        )
        for _ in range(moved):
            self.observer.dead("endpoint_disabled")
        return moved

    # -- gates that defer without spending an attempt -------------------------------------

    def _gate(self, job: Job) -> tuple[float | None, bool]:
        """Return (seconds to wait or None, whether an in-flight slot was taken)."""
        slot = False
        if job.rate_limit:
            wait = self._rate_wait(job.endpoint_id, int(job.rate_limit))
            if wait is not None:
                return wait, False
        if self._is_slow(job.endpoint_id):
            if not self.busy.try_acquire(job.endpoint_id):
                return 1.0 + random.uniform(0, 1), False
            slot = True
        # Asked last: when the circuit is half-open this hands out the one probe, which must
        # not be lost to a deferral by the other gates.
        wait = self.breaker.allow(job.endpoint_id)
        if wait is not None:
            if slot:
                self.busy.release(job.endpoint_id)
            return wait + random.uniform(0, 1), False
        return None, slot

    def _rate_wait(self, endpoint_id: str, limit: int) -> float | None:
        # A fixed one-second window shared by every worker process through Redis (soft
        # state: losing it only loosens the limit for a second).
        now = time.time()
        key = f"webhooks:ratelimit:{endpoint_id}:{int(now)}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 2)
        count = int(pipe.execute()[0])
        if count <= limit:
            return None
        # Come back roughly when this request's turn in the line arrives.
        return (int(now) + 1 - now) + (count - limit - 1) / limit + random.uniform(0, 0.1)

    def _is_slow(self, endpoint_id: str) -> bool:
        # An endpoint this process has not heard back from yet counts as slow: a burst of
        # first attempts to a receiver that hangs must not take every thread before its
        # first timeout reveals it. A fast endpoint leaves the cap after one answer.
        with self._latency_lock:
            return self._latency.get(endpoint_id, SLOW_SECONDS + 1) > SLOW_SECONDS

    def _observe_latency(self, endpoint_id: str, seconds: float) -> None:
        with self._latency_lock:
            old = self._latency.get(endpoint_id)
            self._latency[endpoint_id] = seconds if old is None else 0.7 * old + 0.3 * seconds

    # -- one attempt ----------------------------------------------------------------------

    def _send(self, job: Job, now: datetime) -> tuple[Outcome, bytes, float]:
        body = envelope(job.event_type, job.event_created_at, job.payload)
        keys = valid_keys(job.secrets, self.vault, now)
        stamp = int(time.time())
        headers = request_headers(
            job.headers,
            job.event_id,
            stamp,
            signing.signature_header(keys, job.event_id, stamp, body),
        )
        started = time.monotonic()
        try:
            response = transport.send(
                self.http,
                job.url,
                body,
                headers,
                timeout=self.settings.request_timeout,
                max_body=MAX_RESPONSE_BYTES,
            )
        except SEND_ERRORS as exc:
            # Every way the receiver or the network can fail is classified and recorded.
            return classify_error(exc), b"", time.monotonic() - started
        outcome = classify_response(response.status_code, response.retry_after, datetime.now(UTC))
        return outcome, response.body, response.duration

    def deliver(self, delivery_id: int, message_id: str) -> str:
        """Attempt the delivery this message names; return what happened."""
        job = self._claim(delivery_id, message_id)
        if job is None:
            return "skipped"  # done, dead, held by another worker, or a stale message
        now = datetime.now(UTC)
        if not job.enabled:
            self._release(job, dead_reason="endpoint_disabled")
            return "dead"
        if job.tenant_id != job.endpoint_tenant:
            # Guarantee 8: never deliver across tenants, whatever created the row.
            log.error("delivery crosses tenants", extra={"delivery_id": job.id})
            self._release(job, dead_reason="tenant_mismatch")
            return "dead"
        max_age = self.settings.max_delivery_age
        if (now - job.budget_started_at).total_seconds() > max_age:
            self._release(job, dead_reason="expired")
            return "dead"

        wait, slot = self._gate(job)
        if wait is not None:
            decision = retry.defer(now, wait, job.budget_started_at, max_age)
            self._release(job, next_at=decision.next_attempt_at, dead_reason=decision.reason)
            return "dead" if decision.reason else "deferred"

        started_at = datetime.now(UTC)
        try:
            outcome, response_body, duration = self._send(job, now)
        finally:
            if slot:
                self.busy.release(job.endpoint_id)
        self._observe_latency(job.endpoint_id, duration)
        return self._finish(job, outcome, response_body, started_at, duration)

    def _finish(
        self,
        job: Job,
        outcome: Outcome,
        response_body: bytes,
        started_at: datetime,
        duration: float,
    ) -> str:
        now = datetime.now(UTC)
        decision = retry.decide(
            outcome,
            attempts_made=job.spent + 1,
            schedule=self.settings.retry_schedule,
            created_at=job.budget_started_at,
            now=now,
            max_age=self.settings.max_delivery_age,
        )
        status = {"succeed": "succeeded", "retry": "pending", "defer": "pending"}.get(
            decision.action, "dead"
        )
        text = response_body.decode("utf-8", "replace").replace("\x00", "\ufffd")
        recorded = self._execute(
            queries.RECORD,
            {
                "id": job.id,
                "tenant": job.tenant_id,
                "endpoint_id": job.endpoint_id,
                "spend": 1 if decision.spends_attempt else 0,
                "status": status,
                "dead_reason": decision.reason if status == "dead" else None,
                "next": decision.next_attempt_at,
                "trigger": job.next_trigger,
                "started": started_at,
                "duration": duration,
                "status_code": outcome.status_code,
                "body": text or None,
                "error_kind": outcome.error_kind,
                "error": outcome.error,
                "ok": outcome.kind is Kind.SUCCEEDED,
                "health": outcome.kind in (Kind.SUCCEEDED, Kind.FAILED),
            },
        )
        if outcome.kind in (Kind.SUCCEEDED, Kind.FAILED):
            self.breaker.record(job.endpoint_id, outcome.kind is Kind.SUCCEEDED)
        else:
            self.breaker.release(job.endpoint_id)  # a throttle says nothing of its health
        self.observer.attempt(outcome.kind.value, duration)
        # Only the attempt that moved the delivery out of pending counts it as finished (a
        # concurrent disable may have killed it meanwhile).
        moved = bool(recorded) and recorded[0]["was"] == "pending"
        if moved and status == "succeeded":
            self.observer.succeeded((now - job.event_created_at).total_seconds())
        elif moved and status == "dead" and decision.reason:
            self.observer.dead(decision.reason)
        log.info(
            "delivery %s",
            decision.action,
            extra={
                "event_id": job.event_id,
                "delivery_id": job.id,
                "endpoint_id": job.endpoint_id,
                "attempt": job.attempts + 1,
                "status": outcome.status_code,
                "outcome": outcome.kind.value,
                "error": outcome.error,
                "duration": round(duration, 4),
            },
        )
        if decision.action == "disable":
            self.disable_endpoint(job.endpoint_id, f"receiver answered {outcome.status_code} Gone")
        elif outcome.kind is Kind.FAILED and job.failing_since is not None:
            failing = (now - job.failing_since).total_seconds()
            if failing >= self.settings.disable_after:
                self.disable_endpoint(
                    job.endpoint_id,
                    f"failing with no success since {job.failing_since:%Y-%m-%d %H:%M:%S} UTC",
                )
        return decision.action
