"""`webhooks portal-link`: single-use links into the tenant portal (`/portal`)."""

from __future__ import annotations

import getpass

import click

from worker.cli.common import DURATION, app, as_dict, connection, emit, json_option
from worker.cli.output import moment
from worker.settings import Settings, format_duration


@click.group("portal-link", invoke_without_command=True)
@click.option("--tenant", default=None, help="The one tenant the portal shows and changes.")
@click.option("--admin", is_flag=True, help="A link for every tenant, with a tenant switcher.")
@click.option(
    "--ttl",
    type=DURATION,
    default=None,
    help="How long the link may wait to be opened [default: WEBHOOKS_PORTAL_LINK_TTL,"
    f" {format_duration(Settings.portal_link_ttl)}].",
)
@click.option("--read-only", is_flag=True, help="The session may look but change nothing.")
@click.option("--no-secrets", is_flag=True, help="The session may not reveal or rotate secrets.")
@json_option
@click.pass_context
def portal_link(
    ctx: click.Context,
    tenant: str | None,
    admin: bool,
    ttl: float | None,
    read_only: bool,
    no_secrets: bool,
    as_json: bool,
) -> None:
    """Make a single-use link into the portal and print its URL (or revoke one: revoke ID)."""
    if ctx.invoked_subcommand is not None:
        return
    if admin == (tenant is not None):
        raise click.UsageError("choose exactly one of --tenant T and --admin")
    made = app().portal_link(
        tenant,
        ttl=ttl,
        read_only=read_only,
        reveal_secrets=not no_secrets,
        created_by=f"cli:{_user()}",
    )
    emit(as_json, as_dict(made), made.url)
    if not as_json:
        click.echo(
            f"portal link {made.id}: single use, open it before {moment(made.expires_at)}",
            err=True,
        )


@portal_link.command("revoke")
@click.argument("link_id", type=int)
@json_option
def portal_link_revoke(link_id: int, as_json: bool) -> None:
    """Revoke a link and end every session it opened."""
    from worker.ops import portal

    with connection() as conn:
        link, ended = portal.revoke_link(conn, link_id)
    emit(
        as_json,
        {**as_dict(link), "sessions_revoked": ended},
        f"revoked portal link {link.id} and {ended} session(s) it opened",
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
