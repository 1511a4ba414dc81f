"""Build the typed settings object from the environment, once, at an entry point.

Every environment variable the product reads is read here, by `Settings.from_env`, and
nowhere else in `worker` (the producers library reads its own three, WEBHOOKS_MAX_PAYLOAD_BYTES,
WEBHOOKS_EVENT_TYPES and WEBHOOKS_VALIDATE_PAYLOADS, in `producers.settings`; the worker
passes them to `publish` explicitly from here).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from producers.names import check_tenant
from producers.settings import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    EventTypes,
    ValidatePayloads,
    check_event_types,
    check_validate_payloads,
)
from worker.errors import ConfigError
from worker.policy.guard import IPNetwork as IPNetwork
from worker.policy.ordering import OnDeath
from worker.queue import AMQP_SCHEMES, LEASE_SECONDS, REDIS_SCHEMES
from worker.store.vault import check_keys

#: WEBHOOKS_RABBITMQ_QUEUE_TYPE's values (worker.queue.rabbitmq.QUEUE_TYPES).
RabbitQueueType = Literal["classic", "quorum"]

#: Every environment variable the product reads; `Settings.from_env` is the only reader.
VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "WEBHOOKS_BROKER_URL",
    "WEBHOOKS_RABBITMQ_QUEUE_TYPE",
    "WEBHOOKS_SECRET_KEY",
    "WEBHOOKS_ALLOWED_NETWORKS",
    "WEBHOOKS_RETRY_SCHEDULE",
    "WEBHOOKS_MAX_DELIVERY_AGE",
    "WEBHOOKS_DISABLE_AFTER",
    "WEBHOOKS_REQUEST_TIMEOUT",
    "WEBHOOKS_MAX_PAYLOAD_BYTES",
    "WEBHOOKS_EVENT_TYPES",
    "WEBHOOKS_VALIDATE_PAYLOADS",
    "WEBHOOKS_CIRCUIT_FAILURES",
    "WEBHOOKS_CIRCUIT_COOLDOWN",
    "WEBHOOKS_CIRCUIT_MAX_COOLDOWN",
    "WEBHOOKS_OPERATIONS_TENANT",
    "WEBHOOKS_ORDERED_ON_DEATH",
    "WEBHOOKS_METRICS_PORT",
    "WEBHOOKS_RELAY_METRICS_PORT",
    "WEBHOOKS_LOG_FORMAT",
    "WEBHOOKS_LOG_LEVEL",
    "WEBHOOKS_TRACEPARENT",
    "WEBHOOKS_WORKER_CONCURRENCY",
    "WEBHOOKS_PORTAL_SESSION_TTL",
    "WEBHOOKS_PORTAL_LINK_TTL",
    "WEBHOOKS_PORTAL_NAME",
    "WEBHOOKS_PORTAL_LOGO_URL",
    "WEBHOOKS_PORTAL_ACCENT",
    "WEBHOOKS_PORTAL_FRAME_ANCESTORS",
    "WEBHOOKS_PORTAL_URL",
    "PROMETHEUS_MULTIPROC_DIR",
)

#: The OpenTelemetry variables read here, to tell whether the relay and the workers trace
#: (`traces_exporters`); the SDK reads them and the other OTEL_* variables itself.
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)
#: Span exporters the relay and the workers can build (the otel extra ships OTLP over HTTP).
TRACES_EXPORTERS = ("otlp", "console")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

#: Standard Webhooks' schedule: immediately, then 5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h, 24h.
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


def parse_duration(text: str) -> float:
    """Return the seconds in a duration such as ``30s``, ``5m``, ``1h30m`` or ``4d``.

    Raises ValueError for anything else, negatives included. A bare number is refused: read
    as seconds, ``--older-than 30`` meant to keep 30 days kept 30 seconds.
    """
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        raise ValueError(
            f"{text!r} has no unit (write e.g. {value}s, {value}m, {value}h or {value}d)"
        )
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 2h, 4d)")
    return total


def format_duration(seconds: float) -> str:
    """Return a short human form of a duration (``90`` -> ``1m30s``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def parse_schedule(text: str) -> tuple[float, ...]:
    """Return the delays of a comma list such as ``0s,5s,5m``; at least one, each >= 0."""
    items = [item for item in (part.strip() for part in text.split(",")) if item]
    if not items:
        raise ValueError("empty schedule")
    if len(items) > 100:
        raise ValueError("at most 100 attempts")
    return tuple(parse_duration(item) for item in items)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Return the CIDRs of a comma list (``10.0.0.0/8,127.0.0.0/8``)."""
    nets = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"not a CIDR: {item!r}") from exc
    return tuple(nets)


T = TypeVar("T")
#: A number that must be positive: a whole number or a duration in seconds.
N = TypeVar("N", int, float)

Env = Mapping[str, str]


def read(env: Env, name: str, parse: Callable[[str], T], default: T) -> T:
    """Return ``name`` parsed, or ``default`` when unset or empty; ConfigError names it."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(name, str(exc)) from exc


def positive(parse: Callable[[str], N]) -> Callable[[str], N]:
    """Return ``parse`` refusing zero and negative values."""

    def inner(raw: str) -> N:
        value = parse(raw)
        if value <= 0:
            raise ValueError(f"must be positive, got {raw!r}")
        return value

    return inner


def parse_integer(raw: str) -> int:
    """Parse a whole number, saying so in an operator's words when it is not one."""
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"must be a whole number, got {raw!r}") from None


def parse_at_least_zero(raw: str) -> int:
    """Parse a whole number where 0 means off."""
    value = parse_integer(raw)
    if value < 0:
        raise ValueError(f"must be 0 (off) or more, got {raw!r}")
    return value


def parse_port(raw: str) -> int:
    """Parse a TCP port number."""
    value = parse_integer(raw)
    if not 0 < value < 65536:
        raise ValueError(f"not a TCP port: {raw!r}")
    return value


def parse_log_format(raw: str) -> str:
    """Accept ``text`` or ``json``."""
    if raw not in ("text", "json"):
        raise ValueError(f"must be 'text' or 'json', got {raw!r}")
    return raw


#: WEBHOOKS_LOG_LEVEL's values, and the `logging` level each names.
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30}


def parse_log_level(raw: str) -> str:
    """Accept ``debug``, ``info`` or ``warning``."""
    if raw not in LOG_LEVELS:
        raise ValueError(f"must be 'debug', 'info' or 'warning', got {raw!r}")
    return raw


def parse_on_off(raw: str) -> bool:
    """Accept ``on`` or ``off``."""
    if raw not in ("on", "off"):
        raise ValueError(f"must be 'on' or 'off', got {raw!r}")
    return raw == "on"


def traces_exporters(env: Env) -> tuple[str, ...]:
    """Return the span exporters the OTEL_* variables ask for; () when tracing is off.

    Tracing is on when OTEL_TRACES_EXPORTER names exporters (``otlp``, ``console``; ``none``
    turns it off), or when unset, when an OTLP endpoint is set; OTEL_SDK_DISABLED=true turns
    it off. With nothing set it is off, not OpenTelemetry's default ``otlp`` to localhost:
    a deployment that never asked for traces sends none.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    raw = env.get("OTEL_TRACES_EXPORTER", "")
    if raw.strip():
        names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
        for name in names:
            if name not in (*TRACES_EXPORTERS, "none"):
                raise ConfigError(
                    "OTEL_TRACES_EXPORTER",
                    f"must be otlp, console or none (a comma list), got {name!r}",
                )
        if "none" in names:
            return ()
    elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        names = ("otlp",)
    else:
        return ()
    if "otlp" in names:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env.get(name, "")
            if protocol and protocol != "http/protobuf":
                raise ConfigError(name, f"only http/protobuf is supported, got {protocol!r}")
            if protocol:
                break
    return names


def parse_ordered_on_death(raw: str) -> OnDeath:
    """Accept ``continue`` or ``block``."""
    if raw == "continue":
        return "continue"
    if raw == "block":
        return "block"
    raise ValueError(f"must be 'continue' or 'block', got {raw!r}")


def parse_queue_type(raw: str) -> RabbitQueueType:
    """Accept ``classic`` or ``quorum``."""
    if raw == "classic":
        return "classic"
    if raw == "quorum":
        return "quorum"
    raise ValueError(f"must be 'classic' or 'quorum', got {raw!r}")


def parse_redis_url(raw: str) -> str:
    """Accept a Redis URL."""
    if not raw.startswith(REDIS_SCHEMES):
        *others, last = REDIS_SCHEMES
        raise ValueError(f"must start with {', '.join(others)} or {last}")
    return raw


def parse_broker_url(raw: str) -> str:
    """Accept the URL of either broker, Redis or RabbitMQ."""
    if not raw.startswith(REDIS_SCHEMES + AMQP_SCHEMES):
        raise ValueError(
            f"must start with {', '.join(REDIS_SCHEMES)} (Redis) or {', '.join(AMQP_SCHEMES)}"
            " (RabbitMQ)"
        )
    return raw


def parse_database_url(raw: str) -> str:
    """Accept a postgresql:// URL or a libpq key=value string."""
    if not (raw.startswith(("postgres://", "postgresql://")) or "=" in raw):
        raise ValueError("must be a postgresql:// URL or a libpq key=value string")
    return raw


def parse_tenant(raw: str) -> str:
    """Accept a tenant id endpoints can be registered under (`producers.names`).

    Its InvalidEvent is a ValueError, so `read` names the variable in front of it.
    """
    return check_tenant(raw)


def parse_accent(raw: str) -> str:
    """Accept a colour as ``#rrggbb`` (it goes into the portal's style sheet)."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", raw):
        raise ValueError(f"must be a colour as #rrggbb, got {raw!r}")
    return raw.lower()


def parse_http_url(raw: str) -> str:
    """Accept an http:// or https:// URL with a host, without a trailing slash."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"must be an http:// or https:// URL without a query, got {raw!r}")
    return raw.rstrip("/")


def parse_frame_ancestors(raw: str) -> tuple[str, ...]:
    """Accept the origins that may frame the portal, space or comma separated."""
    items = [item for item in re.split(r"[\s,]+", raw) if item]
    out: list[str] = []
    for item in items:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"not an origin such as https://app.example.com: {item!r}")
        out.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(out)


def parse_portal_name(raw: str) -> str:
    """Accept a short product name for the portal's header and title."""
    if len(raw) > 60 or not raw.isprintable():
        raise ValueError("must be printable text of at most 60 characters")
    return raw


def circuit_cooldowns(env: Env, first: float, most: float) -> tuple[float, float]:
    """Return the circuit's first and longest cooldowns; the longest is at least the first."""
    cooldown = read(env, "WEBHOOKS_CIRCUIT_COOLDOWN", positive(parse_duration), first)
    longest = read(
        env, "WEBHOOKS_CIRCUIT_MAX_COOLDOWN", positive(parse_duration), max(most, cooldown)
    )
    if longest < cooldown:
        raise ConfigError(
            "WEBHOOKS_CIRCUIT_MAX_COOLDOWN",
            f"must be at least WEBHOOKS_CIRCUIT_COOLDOWN ({format_duration(cooldown)})",
        )
    return cooldown, longest


@dataclass(frozen=True)
class Settings:
    """Hold every setting of the product; build with `Settings.from_env`."""

    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: WEBHOOKS_BROKER_URL: the queue's broker, Redis or RabbitMQ; empty means `redis_url`.
    broker_url: str = ""
    #: WEBHOOKS_RABBITMQ_QUEUE_TYPE: the RabbitMQ queue is a ``classic`` or ``quorum`` one
    #: (ignored on Redis).
    rabbitmq_queue_type: RabbitQueueType = "classic"
    secret_key: str | None = None
    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    max_delivery_age: float = 4 * 86400
    disable_after: float = 5 * 86400
    request_timeout: float = 30.0
    connect_timeout: float = 5.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    #: WEBHOOKS_EVENT_TYPES: ``open``, or ``known``: `publish` (CLI, API) refuses a type the
    #: event-type catalogue lacks or has archived.
    event_types: EventTypes = "open"
    #: WEBHOOKS_VALIDATE_PAYLOADS: ``off``, ``warn`` or ``reject`` a payload that does not
    #: match its type's latest JSON Schema.
    validate_payloads: ValidatePayloads = "off"
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)
    metrics_port: int = 9191
    relay_metrics_port: int = 9192
    log_format: str = "text"
    #: WEBHOOKS_LOG_LEVEL: ``debug`` adds a line per successful attempt (`LOG_LEVELS`).
    log_level: str = "info"
    #: WEBHOOKS_TRACEPARENT: requests to receivers carry the attempt span's `traceparent`
    #: (when tracing is on); off by default, since receivers see it.
    traceparent: bool = False
    #: Span exporters from the OTEL_* variables (`traces_exporters`): () when not tracing.
    traces_exporters: tuple[str, ...] = ()
    queue_name: str = "webhooks"
    circuit_failures: int = 5
    circuit_cooldown: float = 30.0
    circuit_max_cooldown: float = 600.0
    operations_tenant: str = "operations"
    #: WEBHOOKS_ORDERED_ON_DEATH: when the head of an ordering key dies, its key goes on
    #: (``continue``) or waits until it is replayed or discarded (``block``).
    ordered_on_death: OnDeath = "continue"
    #: WEBHOOKS_PORTAL_SESSION_TTL: how long a portal session lasts after its link is opened.
    portal_session_ttl: float = 8 * 3600.0
    #: WEBHOOKS_PORTAL_LINK_TTL: how long a portal link may wait to be opened, by default.
    portal_link_ttl: float = 15 * 60.0
    #: WEBHOOKS_PORTAL_NAME / _LOGO_URL / _ACCENT: the portal's branding.
    portal_name: str = "Webhooks"
    portal_logo_url: str | None = None
    portal_accent: str = "#1d4ed8"
    #: WEBHOOKS_PORTAL_FRAME_ANCESTORS: origins that may show the portal in an iframe.
    portal_frame_ancestors: tuple[str, ...] = ()
    #: WEBHOOKS_PORTAL_URL: the portal's public base URL, which links are made with.
    portal_url: str = "http://127.0.0.1:8080/portal"
    #: WEBHOOKS_WORKER_CONCURRENCY, set by `webhooks worker` (--concurrency) for its
    #: processes: requests in flight per process, ~1,000 deliveries/s per process at 250 ms.
    worker_concurrency: int = 256
    #: Dramatiq threads per worker process (`webhooks worker --threads`); they only hand
    #: messages over to the engine.
    worker_threads: int = 8
    #: Events the relay fans out per statement (`webhooks relay --batch-size`).
    relay_batch_size: int = 1000
    #: Seconds a queued delivery is left to its message before the relay's scheduler checks
    #: on it (`webhooks relay --lease`).
    relay_lease: float = LEASE_SECONDS
    #: PROMETHEUS_MULTIPROC_DIR, where worker processes write their metric files (set by
    #: `webhooks worker`; prometheus_client reads it too).
    metrics_multiproc_dir: str | None = None
    #: The variables the environment set (non-empty): `webhooks dev` and the bench bring
    #: their own Redis, ports and schedule for what the operator left unset.
    given: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Env | None = None) -> Settings:
        """Read the environment; raise ConfigError naming the first bad variable."""
        env = os.environ if environ is None else environ
        defaults = cls()
        # Read in this order, so the first bad variable named is the same on every run.
        cooldown, max_cooldown = circuit_cooldowns(
            env, defaults.circuit_cooldown, defaults.circuit_max_cooldown
        )
        redis = read(env, "REDIS_URL", parse_redis_url, defaults.redis_url)
        duration = positive(parse_duration)
        return cls(
            redis_url=redis,
            given=frozenset(name for name in VARIABLES if env.get(name)),
            broker_url=read(env, "WEBHOOKS_BROKER_URL", parse_broker_url, redis),
            rabbitmq_queue_type=read(
                env, "WEBHOOKS_RABBITMQ_QUEUE_TYPE", parse_queue_type, defaults.rabbitmq_queue_type
            ),
            circuit_failures=read(
                env, "WEBHOOKS_CIRCUIT_FAILURES", parse_at_least_zero, defaults.circuit_failures
            ),
            circuit_cooldown=cooldown,
            circuit_max_cooldown=max_cooldown,
            operations_tenant=read(
                env, "WEBHOOKS_OPERATIONS_TENANT", parse_tenant, defaults.operations_tenant
            ),
            ordered_on_death=read(
                env, "WEBHOOKS_ORDERED_ON_DEATH", parse_ordered_on_death, defaults.ordered_on_death
            ),
            database_url=read(env, "DATABASE_URL", parse_database_url, None),
            secret_key=read(env, "WEBHOOKS_SECRET_KEY", check_keys, None),
            retry_schedule=read(
                env, "WEBHOOKS_RETRY_SCHEDULE", parse_schedule, defaults.retry_schedule
            ),
            max_delivery_age=read(
                env, "WEBHOOKS_MAX_DELIVERY_AGE", duration, defaults.max_delivery_age
            ),
            disable_after=read(env, "WEBHOOKS_DISABLE_AFTER", duration, defaults.disable_after),
            request_timeout=read(
                env, "WEBHOOKS_REQUEST_TIMEOUT", duration, defaults.request_timeout
            ),
            max_payload_bytes=read(
                env,
                "WEBHOOKS_MAX_PAYLOAD_BYTES",
                positive(parse_integer),
                defaults.max_payload_bytes,
            ),
            event_types=read(env, "WEBHOOKS_EVENT_TYPES", check_event_types, defaults.event_types),
            validate_payloads=read(
                env,
                "WEBHOOKS_VALIDATE_PAYLOADS",
                check_validate_payloads,
                defaults.validate_payloads,
            ),
            allowed_networks=read(env, "WEBHOOKS_ALLOWED_NETWORKS", parse_networks, ()),
            metrics_port=read(env, "WEBHOOKS_METRICS_PORT", parse_port, defaults.metrics_port),
            relay_metrics_port=read(
                env, "WEBHOOKS_RELAY_METRICS_PORT", parse_port, defaults.relay_metrics_port
            ),
            log_format=read(env, "WEBHOOKS_LOG_FORMAT", parse_log_format, defaults.log_format),
            log_level=read(env, "WEBHOOKS_LOG_LEVEL", parse_log_level, defaults.log_level),
            traceparent=read(env, "WEBHOOKS_TRACEPARENT", parse_on_off, defaults.traceparent),
            traces_exporters=traces_exporters(env),
            worker_concurrency=read(
                env,
                "WEBHOOKS_WORKER_CONCURRENCY",
                positive(parse_integer),
                defaults.worker_concurrency,
            ),
            metrics_multiproc_dir=read(env, "PROMETHEUS_MULTIPROC_DIR", str, None),
            portal_session_ttl=read(
                env, "WEBHOOKS_PORTAL_SESSION_TTL", duration, defaults.portal_session_ttl
            ),
            portal_link_ttl=read(
                env, "WEBHOOKS_PORTAL_LINK_TTL", duration, defaults.portal_link_ttl
            ),
            portal_name=read(env, "WEBHOOKS_PORTAL_NAME", parse_portal_name, defaults.portal_name),
            portal_logo_url=read(env, "WEBHOOKS_PORTAL_LOGO_URL", parse_http_url, None),
            portal_accent=read(env, "WEBHOOKS_PORTAL_ACCENT", parse_accent, defaults.portal_accent),
            portal_frame_ancestors=read(
                env, "WEBHOOKS_PORTAL_FRAME_ANCESTORS", parse_frame_ancestors, ()
            ),
            portal_url=read(env, "WEBHOOKS_PORTAL_URL", parse_http_url, defaults.portal_url),
        )

    def __post_init__(self) -> None:
        if not self.broker_url:  # REDIS_URL as before: nothing changes for Redis deployments
            object.__setattr__(self, "broker_url", self.redis_url)

    @property
    def broker_is_redis(self) -> bool:
        """Tell whether the queue lives in Redis (else RabbitMQ: no Redis is used at all)."""
        return self.broker_url.startswith(REDIS_SCHEMES)

    def require_database_url(self) -> str:
        """Return DATABASE_URL or raise ConfigError when it is unset."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL", "not set (e.g. postgresql://localhost/app)")
        return self.database_url
