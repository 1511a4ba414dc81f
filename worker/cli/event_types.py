"""`webhooks event-type`: the catalogue of event types, their JSON Schemas and examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from worker.cli.common import as_dict, connection, emit, json_option
from worker.cli.output import fields, table
from worker.ops.event_types import UNSET, EventType, Shown

#: The largest schema, example or OpenAPI file read.
MAX_FILE = 16 * 1024 * 1024
_COLUMNS = ["name", "group", "latest_version", "deprecated", "archived", "description"]


@click.group("event-type")
def event_type() -> None:
    """The catalogue: what each event type means and what its payload looks like."""


def read_document(path: str, option: str) -> Any:
    """Return the JSON (or, for .yaml and .yml, YAML) value of a file, or a usage error."""
    where = f"{option} {path}" if option else path
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise click.UsageError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE:
        raise click.UsageError(f"{where}: larger than {MAX_FILE // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.UsageError(f"{where}: not UTF-8 text") from None
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        return _yaml(text, where)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise click.UsageError(f"{where}: not valid JSON: {exc}") from None


def _yaml(text: str, where: str) -> Any:
    import yaml

    try:
        found = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        line = str(exc).replace("\n", " ")
        raise click.UsageError(f"{where}: not valid YAML: {line}") from None
    # YAML reads an unquoted 2026-01-31 as a date: the catalogue stores JSON, so as text.
    return json.loads(json.dumps(found, default=lambda v: getattr(v, "isoformat", v.__str__)()))


def _file(path: str | None, option: str) -> Any:
    return None if path is None else read_document(path, option)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _shown(shown: Shown, version: int | None = None) -> str:
    t = shown.event_type
    lines = fields(
        [
            ("name", t.name),
            ("description", t.description or None),
            ("group", t.group),
            ("deprecated", t.deprecated),
            ("archived", t.archived),
            ("versions", [v.version for v in shown.versions] or None),
            ("created", t.created_at),
            ("updated", t.updated_at),
        ]
    )
    chosen = [v for v in shown.versions if v.version == (version or t.latest_version)]
    for v in chosen:
        lines += f"\n\nschema (version {v.version}):\n{_pretty(v.schema)}"
        if v.example is not None:
            lines += f"\n\nexample:\n{_pretty(v.example)}"
    return lines


def _document(shown: Shown) -> dict[str, Any]:
    return {**as_dict(shown.event_type), "versions": as_dict(shown)["versions"]}


@event_type.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the event means.")
@click.option("--group", default=None, help="A group to list it under.")
@click.option("--schema", "schema_file", metavar="FILE", help="JSON Schema of the payload.")
@click.option("--example", "example_file", metavar="FILE", help="An example payload.")
@json_option
def event_type_add(
    name: str,
    description: str,
    group: str | None,
    schema_file: str | None,
    example_file: str | None,
    as_json: bool,
) -> None:
    """Add an event type; --schema (JSON or YAML) is its version 1, --example checked by it."""
    from worker.ops import event_types

    schema, example = _file(schema_file, "--schema"), _file(example_file, "--example")
    with connection() as conn:
        shown = event_types.add(
            conn, name, description=description, group=group, schema=schema, example=example
        )
    emit(as_json, _document(shown), lambda: _shown(shown))


@event_type.command("update")
@click.argument("name")
@click.option("--description", default=None, help="What the event means.")
@click.option("--group", default=None, help="A group to list it under.")
@click.option("--schema", "schema_file", metavar="FILE", help="A new schema version.")
@click.option("--example", "example_file", metavar="FILE", help="An example payload.")
@json_option
def event_type_update(
    name: str,
    description: str | None,
    group: str | None,
    schema_file: str | None,
    example_file: str | None,
    as_json: bool,
) -> None:
    """Change what is given: --schema adds a version (earlier ones are kept); --example is
    checked against the new schema, else the latest."""
    from worker.ops import event_types

    if all(v is None for v in (description, group, schema_file, example_file)):
        raise click.UsageError(
            "nothing to update: give --description, --group, --schema or --example"
        )
    schema, example = _file(schema_file, "--schema"), _file(example_file, "--example")
    with connection() as conn:
        shown = event_types.update(
            conn,
            name,
            description=description,
            group=UNSET if group is None else group,
            schema=schema,
            example=example,
        )
    emit(as_json, _document(shown), lambda: _shown(shown))


@event_type.command("list")
@click.option("--group", default=None, help="Only the types of this group.")
@click.option("--archived", is_flag=True, help="Include archived types.")
@json_option
def event_type_list(group: str | None, archived: bool, as_json: bool) -> None:
    """List the catalogue by name, each type with its latest schema version."""
    from worker.ops import event_types

    with connection() as conn:
        found: list[EventType] = event_types.list_types(conn, group=group, archived=archived)
    emit(as_json, found, lambda: table(found, _COLUMNS))


@event_type.command("show")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=1), help="Show this version.")
@json_option
def event_type_show(name: str, version: int | None, as_json: bool) -> None:
    """Show a type, its versions, and the latest (or --version N) schema and example."""
    from worker.ops import event_types

    with connection() as conn:
        shown = event_types.show(conn, name)
    if version is not None and version not in [v.version for v in shown.versions]:
        raise click.UsageError(f"--version {version}: event type {name} has no such version")
    emit(as_json, _document(shown), lambda: _shown(shown, version))


def _flag(which: str, verb: str) -> click.Command:
    @click.command(verb)
    @click.argument("name")
    @click.option("--undo", is_flag=True, help=f"Clear the flag: no longer {which}.")
    @json_option
    def command(name: str, undo: bool, as_json: bool) -> None:
        from worker.ops import event_types

        with connection() as conn:
            done = event_types.flag(conn, name, which, not undo)
        emit(as_json, done, f"event type {name}: {'no longer ' if undo else ''}{which}")

    return command


deprecate = _flag("deprecated", "deprecate")
deprecate.help = "Mark a type deprecated (it still publishes); --undo clears it."
archive = _flag("archived", "archive")
archive.help = (
    "Archive a type: hidden from listings, and endpoints subscribing are told; --undo clears."
)
event_type.add_command(deprecate)
event_type.add_command(archive)


@event_type.command("import")
@click.argument("openapi_file")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@json_option
def event_type_import(openapi_file: str, dry_run: bool, as_json: bool) -> None:
    """Load the event types of an OpenAPI document's webhooks (3.1) or x-webhooks (3.0)
    section, JSON or YAML: one type per key, with its schema, example and description."""
    from worker.ops import event_types

    document = read_document(openapi_file, "")
    with connection() as conn:
        done = event_types.import_document(conn, document, source=openapi_file, dry_run=dry_run)
    emit(as_json, done, lambda: table(done, ["name", "action", "version"]))
    if dry_run and not as_json:
        click.echo("dry run: nothing was written", err=True)
