"""What every command shares: the App, --json or a table, and errors as one line.

A command asks `connection()` (or `registry()`) for Postgres and `queue()` for the broker;
they come from one `worker.app.App` per command, built from the settings on first use and
closed when the command ends. It prints with `emit`: the value as JSON under --json, else the
human form. `Cli` turns an expected error into one line on stderr and the exit status the
contract names: 1 at run time, 2 for a usage error or a bad setting.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
import psycopg

from producers.errors import InvalidSchema
from worker.app import App
from worker.cli.output import emit_json, plain
from worker.errors import (
    ConfigError,
    InvalidEndpoint,
    MigrationError,
    PublishError,
    WebhooksError,
)
from worker.ops.endpoints import Endpoints
from worker.queue import Queue
from worker.settings import Settings, parse_duration
from worker.store import db
from worker.store import migrate as migrations

F = TypeVar("F", bound=Callable[..., Any])

_APP = "webhooks.app"


class Cli(click.Group):
    """Turn expected errors into one line on stderr and the documented exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, PublishError, InvalidEndpoint, InvalidSchema) as exc:
            # Bad settings and bad arguments are usage errors: nothing was written.
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except WebhooksError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            # One line like every other error (click's own display adds the usage first).
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except UnicodeEncodeError:
            # An argument that was not UTF-8 on the command line (Python keeps its bytes as
            # lone surrogates) cannot be sent to Postgres: a usage error, not a traceback.
            click.echo("error: an argument is not valid UTF-8 text", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)


# -- the App ------------------------------------------------------------------------------


@functools.cache
def settings() -> Settings:
    """Build the settings from the environment once per command."""
    return Settings.from_env()


def warn(text: str) -> None:
    """Print a warning on stderr, apart from the command's output."""
    click.echo(f"warning: {text}", err=True)


def app() -> App:
    """Return this command's App, built on first use and closed when the command ends."""
    ctx = click.get_current_context().find_root()
    found = ctx.meta.get(_APP)
    if not isinstance(found, App):
        found = App(settings(), warn=warn)
        ctx.meta[_APP] = found
        ctx.call_on_close(found.close)
    return found


@contextmanager
def connection() -> Iterator[psycopg.Connection[Any]]:
    """Lend the command a Postgres connection (autocommit, dict rows), closed after use."""
    with app().connection() as conn:
        yield conn


@contextmanager
def registry(url: str | None = None) -> Iterator[Endpoints]:
    """Lend the command the endpoint registry on a connection of its own.

    ``url``, the URL the command sets, has its host resolved before the connection opens.
    """
    resolved = app().prefetch(url) if url is not None else None
    with connection() as conn:
        yield app().endpoints(conn, resolver=resolved)


def queue() -> Queue:
    """Return the configured broker's queue (WEBHOOKS_BROKER_URL, else REDIS_URL)."""
    return app().queue()


# -- output -------------------------------------------------------------------------------


def json_option(func: F) -> F:
    """Add --json to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        func
    )


def emit(as_json: bool, data: Any, human: str | Callable[[], str]) -> None:
    """Print ``data`` as JSON under --json, else ``human`` (a text, or what renders it)."""
    if as_json:
        emit_json(data)
    else:
        click.echo(human if isinstance(human, str) else human())


def as_dict(value: Any) -> dict[str, Any]:
    """Return a dataclass as a dict of JSON types, to print with fields of its own added."""
    out: dict[str, Any] = plain(value)
    return out


# -- options ------------------------------------------------------------------------------

tenant_option = click.option("--tenant", default=None, help="Only act within this tenant.")

page_options = [
    click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000)),
    click.option("--offset", default=0, show_default=True, type=click.IntRange(0)),
]


def paged(func: F) -> F:
    """Add --limit and --offset to a listing command."""
    for option in reversed(page_options):
        func = option(func)
    return func


# Generic in click 8.5's types only; subscripting it would fail on the click 8.1 we allow.
class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration option (``30s``, ``5m``, ``2h``, ``4d``) in seconds; errors name the option."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            # The same line as `duration`'s: ``--grace: not a duration: '5parsecs' ...``.
            name = param.opts[0] if param is not None and param.opts else "duration"
            raise click.UsageError(f"{name}: {exc}", ctx) from None


#: The type of every duration option: ``@click.option("--grace", type=DURATION)``.
DURATION = Duration()


def duration(text: str, option: str) -> float:
    """Parse the duration given to ``option`` (not typed DURATION), or fail naming it."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.UsageError(f"{option}: {exc}") from None


def when(text: str | None) -> datetime | None:
    """Parse --since: an ISO 8601 time, or a duration meaning that long ago (``2h``)."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        refused = exc
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if text.strip().replace(".", "", 1).isdigit():
            raise click.UsageError(f"--since: {refused}") from None
        raise click.UsageError(
            f"--since: {text!r} is neither a time (2026-01-31T12:00) nor a duration (2h)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- daemons ------------------------------------------------------------------------------


def require_schema(*, reachable: bool = False) -> None:
    """Refuse to start a daemon on a schema older than the code; wait out an absent Postgres.

    A database that cannot be reached is left to the daemon, which retries until it can,
    unless ``reachable`` asks for it now (then the connection's error is raised); a
    reachable one without the schema this code needs is an operator's mistake, said in one
    line before anything starts.
    """
    try:
        with app().connection() as conn, db.wrapped_errors():
            current = migrations.current_version(conn)
    except MigrationError:
        raise
    except WebhooksError:
        # Unreachable, or the connection lost at this moment: the daemon's own retries
        # deal with it.
        if reachable:
            raise
        return
    if current < migrations.expected_version():
        raise MigrationError("the webhooks schema is missing or behind: run `webhooks migrate`")


def require_broker() -> None:
    """Refuse to start a daemon on a broker URL the broker refuses; wait out an absent one.

    A broker that cannot be reached is an outage the daemon waits out; one that answers and
    refuses (a Redis database it does not have, RabbitMQ credentials or vhost) will refuse
    for ever: one line naming the variable, before anything starts.
    """
    from worker.queue import BrokerError, BrokerRefused

    conf = app().settings
    broker = app().queue()
    try:
        broker.ping()
    except BrokerRefused as exc:
        variable = "WEBHOOKS_BROKER_URL" if "WEBHOOKS_BROKER_URL" in conf.given else "REDIS_URL"
        raise ConfigError(variable, f"the broker refuses it: {exc}") from None
    except BrokerError:
        return
    finally:
        broker.close()  # it reconnects on next use
