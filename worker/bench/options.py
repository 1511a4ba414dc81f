"""What the benchmark measures and how hard, and its fixed constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.errors import InvalidEndpoint, WebhooksError
from worker.policy import filters
from worker.settings import Settings

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Redis databases tried, in order, when --redis-db is not given: the first one empty but for
#: the bench's claim. On a configured (shared) Redis, 0 is the product's default and 12 and
#: 13 are the test suite's defaults, so none of those is tried.
REDIS_DBS = (15, 14, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
CLAIM_KEY = "webhooks:bench:owner"
EVENT_TYPE = "bench.event"


def payload(seq: int, size: int) -> dict[str, Any]:
    """Return the payload of bench event `seq`, whose JSON is about `size` bytes."""
    return {"seq": seq, "pad": "x" * max(0, size - 24)}


#: Enough attempts that a delivery survives even a high --fail-rate (0.5**40 per delivery).
RETRY_SCHEDULE = "0s" + ",200ms" * 39
#: The bench's receiver listens on loopback, which the SSRF guard refuses unless allowed.
LOOPBACK = "127.0.0.0/8"
#: The receiver checks the signature of every request this often (and each path's first).
VERIFY_EVERY = 20
#: A wait fails when nothing new has arrived for this long. A circuit opened by consecutive
#: failures (--fail-rate) pauses an endpoint for 30 s or more, so this is generous.
STALL_SECONDS = 120.0
PUBLISH_BATCH = 1000
#: Threads per process of the two ceiling runs; the best is the ceiling. More threads keep
#: more requests in flight to a slow receiver but contend for the GIL with a fast one.
CEILING_THREADS = (8, 32)
#: With --receiver-delay a ceiling thread makes at most 1/delay requests a second, so the
#: ceiling sends only about this many seconds' worth (events x endpoints could take minutes).
CEILING_SECONDS = 5.0
#: The roles of the CPU-per-delivery figure, in the order shown.
CPU_ROLES = ("workers", "postgres", "redis", "rabbitmq", "relay", "receiver", "bench")
#: Well below the workers' attempt deadline (30 s by default), so no attempt times out.
MAX_RECEIVER_DELAY = 10.0
#: How often the worker processes' Postgres connections are counted during end to end.
SAMPLE_SECONDS = 0.05
#: The Dramatiq queue `webhooks relay` and `webhooks worker` use (in the bench's own Redis
#: database, so it is the bench's alone).
QUEUE = Settings().queue_name


class BenchError(WebhooksError):
    """Report a benchmark that could not run or finish (a process died, a wait stalled)."""


@dataclass(frozen=True)
class Options:
    """What to measure and how hard; the defaults give a run of a few minutes."""

    events: int = 20_000
    endpoints: int = 2
    processes: int = 2
    threads: int = 8
    payload_bytes: int = 256
    fail_rate: float = 0.0
    rate: float = 100.0
    duration: float = 10.0
    repeats: int = 3
    backlog: int = 0
    single_events: int = 2000
    database_url: str | None = None
    redis_url: str | None = None
    redis_db: int | None = None
    #: WEBHOOKS_BROKER_URL of the relay and workers (an amqp:// URL: RabbitMQ; its queue is
    #: purged before each phase). None: the bench's own Redis database.
    broker_url: str | None = None
    #: WEBHOOKS_RABBITMQ_QUEUE_TYPE of the relay and workers on RabbitMQ.
    rabbitmq_queue_type: str = "classic"
    #: WEBHOOKS_SECRET_KEY: with it the endpoints' secrets are stored encrypted, as in
    #: production, and the workers decrypt them on every attempt.
    secret_key: str | None = None
    #: Seconds the receiver waits before answering each request.
    receiver_delay: float = 0.0
    #: `webhooks worker --concurrency`; None leaves the worker's default.
    concurrency: int | None = None
    #: A payload filter put on every endpoint (worker.policy.filters), to measure what the
    #: relay's evaluation costs; every bench event must pass it.
    filter: dict[str, Any] | None = None
    #: With N, every endpoint is ordered and event `seq` has ordering key ``k{seq % N}``;
    #: the receiver's records are checked for order (`order_violations`).
    ordering_keys: int | None = None

    def ordering_key(self, seq: int) -> str | None:
        """Return the ordering key of bench event ``seq`` (None: unordered run)."""
        return f"k{seq % self.ordering_keys}" if self.ordering_keys else None

    def check(self) -> None:
        """Raise BenchError for values the benchmark cannot run with."""
        problems = [
            (self.events < 1, "--events must be at least 1"),
            (self.endpoints < 1, "--endpoints must be at least 1"),
            (self.processes < 1 or self.threads < 1, "--processes and --threads must be >= 1"),
            (not 0.0 <= self.fail_rate < 1.0, "--fail-rate must be in [0, 1)"),
            (self.rate <= 0 or self.duration <= 0, "--rate and --duration must be positive"),
            (self.repeats < 1, "--repeats must be at least 1"),
            (self.payload_bytes < 0, "--payload-bytes must not be negative"),
            (self.redis_db is not None and self.redis_db < 0, "--redis-db must be >= 0"),
            (
                self.broker_url is not None
                and not self.broker_url.startswith(("amqp://", "amqps://")),
                "--broker-url must be an amqp:// or amqps:// URL (Redis is the default)",
            ),
            (
                self.rabbitmq_queue_type not in ("classic", "quorum"),
                "the RabbitMQ queue type must be classic or quorum",
            ),
            (
                not 0.0 <= self.receiver_delay <= MAX_RECEIVER_DELAY,
                f"--receiver-delay must be between 0 and {MAX_RECEIVER_DELAY:g}s",
            ),
            (self.concurrency is not None and self.concurrency < 1, "--concurrency must be >= 1"),
            (
                self.ordering_keys is not None and self.ordering_keys < 1,
                "--ordering-keys must be at least 1",
            ),
        ]
        for bad, message in problems:
            if bad:
                raise BenchError(message)
        if self.filter is not None:
            self._check_filter(self.filter)

    def _check_filter(self, source: dict[str, Any]) -> None:
        try:
            flt = filters.parse(source)
        except InvalidEndpoint as exc:
            raise BenchError(f"--filter: {exc}") from None
        passed, why = filters.evaluate(flt, EVENT_TYPE, "default", payload(0, self.payload_bytes))
        if not passed:
            raise BenchError(f"--filter must pass every bench event, and does not: {why}")
