"""Every SQL statement the product runs, by name, read once from the `.sql` files beside this
module (the way procrastinate keeps its queries).

A statement starts at a header line ``-- name: fan_out``; the comment lines right after it say
why the statement is written the way it is, and the statement runs to the next header. Values
are always parameters (``%(name)s``), never formatted into the text. Each name is bound below as
a constant, so a misspelt name fails at import and under mypy, not at the first call.
"""

from __future__ import annotations

import re
from importlib import resources

FILES = ("relay", "engine", "endpoints", "deliveries", "bench")

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.M)


class StatementError(Exception):
    """A `.sql` file is malformed, or names a statement twice (a packaging or editing error)."""


def parse(text: str, source: str = "<sql>") -> dict[str, str]:
    """Split one `.sql` file into its named statements, leading comments and `;` removed."""
    statements: dict[str, str] = {}
    parts = _HEADER.split(text)
    if parts[0].strip():
        raise StatementError(f"{source}: text before the first '-- name:' header")
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = body.strip("\n").splitlines()
        while lines and lines[0].startswith("--"):
            lines.pop(0)
        sql = "\n".join(lines).strip().removesuffix(";").strip()
        if not sql:
            raise StatementError(f"{source}: statement {name!r} is empty")
        if name in statements:
            raise StatementError(f"{source}: statement {name!r} is named twice")
        statements[name] = sql
    return statements


def load() -> dict[str, str]:
    """Read every statement of the package's `.sql` files."""
    found: dict[str, str] = {}
    for stem in FILES:
        text = resources.files(__package__).joinpath(f"{stem}.sql").read_text("utf-8")
        for name, sql in parse(text, f"{stem}.sql").items():
            if name in found:
                raise StatementError(f"{stem}.sql: statement {name!r} is named in two files")
            found[name] = sql
    return found


STATEMENTS = load()


def _sql(name: str) -> str:
    try:
        return STATEMENTS[name]
    except KeyError:
        raise StatementError(f"no SQL statement named {name!r} in {', '.join(FILES)}") from None


# relay.sql: fan-out, the scheduler, circuit probes, dead-letter announcements.
FAN_OUT = _sql("fan_out")
SCHEDULE = _sql("schedule")
RECHECK_QUEUED = _sql("recheck_queued")
EXTEND_LEASE = _sql("extend_lease")
PROBE = _sql("probe")
CLOSE_IDLE = _sql("close_idle")
SWEEP_PARKED = _sql("sweep_parked")
ANNOUNCE = _sql("announce")
RATE_PRUNE = _sql("rate_prune")

# engine.sql: claim, record, release a batch; endpoint health; the Postgres rate limit.
CLAIM = _sql("claim")
RECORD = _sql("record")
RELEASE = _sql("release")
HEALTH_LOCK = _sql("health_lock")
HEALTH_WRITE = _sql("health_write")
UNPARK = _sql("unpark")
RATE_COUNT = _sql("rate_count")

# endpoints.sql
DISABLE_ENDPOINT = _sql("disable_endpoint")
CLOSE_CIRCUIT = _sql("close_circuit")
SUBSCRIBED = _sql("subscribed")

# deliveries.sql
REARM = _sql("rearm")
MARK_REPLAYED = _sql("mark_replayed")

# relay.sql: the relay's connections, its clock and its wake-up.
CLOCK = _sql("clock")
LISTEN = _sql("listen")

# bench.sql: `webhooks bench` and `webhooks dev`, each in a database it owns or demonstrates.
BENCH_TRUNCATE = _sql("bench_truncate")
BENCH_STATE = _sql("bench_state")
BENCH_LISTENING = _sql("bench_listening")
BENCH_WORKER_CONNECTIONS = _sql("bench_worker_connections")
BENCH_UNSUCCESSFUL = _sql("bench_unsuccessful")
BENCH_STAGES = _sql("bench_stages")
BENCH_SERVER = _sql("bench_server")
DEV_ATTEMPTS = _sql("dev_attempts")
DEV_DEAD_LETTERS = _sql("dev_dead_letters")
