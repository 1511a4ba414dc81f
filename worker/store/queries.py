"""Every SQL statement the product runs, by name, read once from the `.sql` files beside this
module (the way procrastinate keeps its queries).

A statement starts at a header line ``-- name: fan_out``; the comment lines right after it say
why the statement is written the way it is, and the statement runs to the next header. Values
are always parameters (``%(name)s``), never formatted into the text. Each name is bound below as
a constant, so a misspelt name fails at import and under mypy, not at the first call.

A part that several statements must share word for word (the SET list that re-arms a
delivery, which dead letters a selection means, which events may be pruned) is a named
statement of its own, and a line ``-- include: name`` in another statement stands for it: the
text is spliced in when the files are read, so what is bound below is always the whole
statement as Postgres runs it, and the shared part has one source.

Only modules of this package import these constants: the area's store module runs a
statement and returns its rows as frozen dataclasses (`worker.store.rows`).
"""

from __future__ import annotations

import re
from importlib import resources

FILES = (
    "relay",
    "engine",
    "endpoints",
    "deliveries",
    "events",
    "dlq",
    "prune",
    "status",
    "apikeys",
    "portal",
    "metrics",
    "migrate",
    "bench",
    "event_types",
    "traces",
)

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.M)
_INCLUDE = re.compile(r"^([ \t]*)-- include: ([a-z_]+)[ \t]*$", re.M)


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
    return {name: include(sql, found) for name, sql in found.items()}


def include(sql: str, statements: dict[str, str], seen: tuple[str, ...] = ()) -> str:
    """Replace each ``-- include: name`` line of ``sql`` by that statement, indented alike."""

    def splice(match: re.Match[str]) -> str:
        indent, name = match.groups()
        if name in seen:
            raise StatementError(f"statement {name!r} includes itself")
        if name not in statements:
            raise StatementError(f"'-- include: {name}' names no statement")
        text = include(statements[name], statements, (*seen, name))
        return "\n".join(indent + line if line else line for line in text.splitlines())

    return _INCLUDE.sub(splice, sql)


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
SWEEP_ORDERED = _sql("sweep_ordered")
ANNOUNCE = _sql("announce")

# engine.sql: claim, record, release a batch; endpoint health; the Postgres rate limit.
CLAIM = _sql("claim")
RECORD = _sql("record")
RELEASE = _sql("release")
HEALTH_LOCK = _sql("health_lock")
HEALTH_WRITE = _sql("health_write")
UNPARK = _sql("unpark")
ORDER_NEXT = _sql("order_next")
NEXT_IN_KEY = _sql("next_in_key")  # included in record and order_next
RATE_COUNT = _sql("rate_count")
RATE_PRUNE = _sql("rate_prune")

# endpoints.sql: the endpoint registry, its secrets, disabling and closing circuits.
DISABLE_ENDPOINT = _sql("disable_endpoint")
CLOSE_CIRCUIT = _sql("close_circuit")
SUBSCRIBED = _sql("subscribed")
SEALED_SECRETS = _sql("sealed_secrets")
INSERT_ENDPOINT = _sql("insert_endpoint")
UPDATE_ENDPOINT = _sql("update_endpoint")
ENABLE_ENDPOINT = _sql("enable_endpoint")
LIST_ENDPOINTS = _sql("list_endpoints")
ENDPOINT = _sql("endpoint")
LOCK_ENDPOINT = _sql("lock_endpoint")
ENDPOINT_HEALTH = _sql("endpoint_health")
SET_SECRETS = _sql("set_secrets")
LOCK_ALL_SECRETS = _sql("lock_all_secrets")
SET_SEALED = _sql("set_sealed")
ENDPOINT_DEPENDENTS = _sql("endpoint_dependents")
DELETE_ENDPOINT = _sql("delete_endpoint")

# deliveries.sql: delivery history, retry and resend, and the re-arming replay shares.
REARM = _sql("rearm")
MARK_REPLAYED = _sql("mark_replayed")
LIST_DELIVERIES = _sql("list_deliveries")
SHOW_DELIVERY = _sql("show_delivery")
DELIVERY_ATTEMPTS = _sql("delivery_attempts")
LOCK_DEAD_LETTER = _sql("lock_dead_letter")
LOCK_DELIVERY = _sql("lock_delivery")
RETRY_NOW = _sql("retry_now")
RESEND = _sql("resend")

# events.sql: published events, and the test event of `endpoint test`.
LIST_EVENTS = _sql("list_events")
SHOW_EVENT = _sql("show_event")
CREATE_TEST_EVENT = _sql("create_test_event")
PUBLISHED_BEFORE = _sql("published_before")

# dlq.sql: list, count and replay dead letters.
DEAD_LETTERS_SELECTED = _sql("dead_letters_selected")
LIST_DEAD_LETTERS = _sql("list_dead_letters")
SHOW_DEAD_LETTER = _sql("show_dead_letter")
COUNT_DEAD_LETTERS = _sql("count_dead_letters")
CURRENT_DEAD_LETTER_IDS = _sql("current_dead_letter_ids")
DISABLED_SELECTED_ENDPOINTS = _sql("disabled_selected_endpoints")
ENABLE_ENDPOINTS = _sql("enable_endpoints")
REPLAY_BATCH = _sql("replay_batch")
DISCARD_BATCH = _sql("discard_batch")
OVERTAKEN = _sql("overtaken")

# prune.sql: retention.
PRUNABLE_EVENTS = _sql("prunable_events")
PRUNE_COUNTS = _sql("prune_counts")
PRUNE_BATCH = _sql("prune_batch")
PRUNE_DRY_RUN = _sql("prune_dry_run")

# portal.sql: the portal's links and sessions, and what only its pages show.
CREATE_PORTAL_LINK = _sql("create_portal_link")
FORGET_PORTAL_LINKS = _sql("forget_portal_links")
USE_PORTAL_LINK = _sql("use_portal_link")
CREATE_PORTAL_SESSION = _sql("create_portal_session")
LIVE_PORTAL_SESSION = _sql("live_portal_session")
REVOKE_PORTAL_LINK = _sql("revoke_portal_link")
END_PORTAL_SESSION = _sql("end_portal_session")
PORTAL_TENANTS = _sql("portal_tenants")
EVENT_TYPES_PUBLISHED = _sql("event_types_published")
DELIVERIES_BY_HOUR = _sql("deliveries_by_hour")
PORTAL_ENDPOINT_HEALTH = _sql("portal_endpoint_health")

# status.sql: `webhooks status` and the invariants of `webhooks check`.
PIPELINE_STATUS = _sql("pipeline_status")
BLOCKED_KEYS = _sql("blocked_keys")
CHECK_ONE_DELIVERY_PER_MATCHING_ENDPOINT = _sql("check_one_delivery_per_matching_endpoint")
CHECK_ATTEMPT_COUNT_MATCHES_ROWS = _sql("check_attempt_count_matches_rows")
CHECK_TERMINAL_STATE_IS_UNIQUE = _sql("check_terminal_state_is_unique")
CHECK_NOTHING_OVERDUE = _sql("check_nothing_overdue")
CHECK_OUTBOX_RELAYED = _sql("check_outbox_relayed")
CHECK_TENANTS_ISOLATED = _sql("check_tenants_isolated")

# apikeys.sql: the HTTP API's keys.
CREATE_API_KEY = _sql("create_api_key")
LIST_API_KEYS = _sql("list_api_keys")
REVOKE_API_KEY = _sql("revoke_api_key")
LIVE_API_KEY = _sql("live_api_key")
TOUCH_API_KEY = _sql("touch_api_key")

# metrics.sql: the relay's backlog gauges.
BACKLOG = _sql("backlog")
LOCAL_STATEMENT_TIMEOUT = _sql("local_statement_timeout")

# migrate.sql: the bookkeeping around the versioned files of schema/.
MIGRATIONS_BOOTSTRAP = _sql("migrations_bootstrap")
MIGRATIONS_TABLE = _sql("migrations_table")
APPLIED_MIGRATIONS = _sql("applied_migrations")
RECORD_MIGRATION = _sql("record_migration")
MIGRATE_LOCK = _sql("migrate_lock")
MIGRATE_UNLOCK = _sql("migrate_unlock")

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
DEV_DEMO_OUTCOMES = _sql("dev_demo_outcomes")

# event_types.sql: the event-type catalogue and its schema versions.
INSERT_EVENT_TYPE = _sql("insert_event_type")
LOCK_EVENT_TYPE = _sql("lock_event_type")
UPDATE_EVENT_TYPE = _sql("update_event_type")
ADD_EVENT_TYPE_SCHEMA = _sql("add_event_type_schema")
SET_EVENT_TYPE_EXAMPLE = _sql("set_event_type_example")
EVENT_TYPES = _sql("event_types")
EVENT_TYPE_SCHEMAS = _sql("event_type_schemas")
ARCHIVED_EVENT_TYPES = _sql("archived_event_types")

# traces.sql: the trace contexts of published events (only when tracing is on).
FANNED_OUT_TRACES = _sql("fanned_out_traces")
EVENT_TRACES = _sql("event_traces")
