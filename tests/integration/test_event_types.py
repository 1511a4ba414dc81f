"""`webhooks event-type`: the catalogue driven as an operator would, through the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import run_cli

INVOICE = {
    "type": "object",
    "required": ["invoice", "amount"],
    "properties": {"invoice": {"type": "string"}, "amount": {"type": "number"}},
}


def cli(db_url: str, *args: str) -> Any:
    result = run_cli(*args, "--json", env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(db_url: str, *args: str) -> str:
    """Run a command that must refuse its input: exit 2, one line on stderr."""
    result = run_cli(*args, env={"DATABASE_URL": db_url})
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    return line


def write(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value) if not isinstance(value, str) else value)
    return str(path)


def counts(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "select (select count(*) from webhooks.event_types),"
            " (select count(*) from webhooks.event_type_schemas)"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_add_update_show_list_keeps_every_schema_version(db_url: str, tmp_path: Path) -> None:
    schema = write(tmp_path / "v1.json", INVOICE)
    example = write(tmp_path / "ex.json", {"invoice": "in_1", "amount": 12.5})
    added = cli(
        db_url, "event-type", "add", "invoice.paid", "--description", "An invoice was paid",
        "--group", "billing", "--schema", schema, "--example", example,
    )  # fmt: skip
    assert added["latest_version"] == 1 and added["group"] == "billing"
    assert added["example"] == {"invoice": "in_1", "amount": 12.5}

    v2 = {**INVOICE, "properties": {**INVOICE["properties"], "currency": {"type": "string"}}}
    yaml_schema = tmp_path / "v2.yaml"
    yaml_schema.write_text("type: object\nproperties:\n  currency: {type: string}\n")
    cli(db_url, "event-type", "update", "invoice.paid", "--schema", write(tmp_path / "v2.json", v2))
    third = cli(db_url, "event-type", "update", "invoice.paid", "--schema", str(yaml_schema))
    assert [v["version"] for v in third["versions"]] == [1, 2, 3]
    assert third["schema"] == {"type": "object", "properties": {"currency": {"type": "string"}}}
    assert third["versions"][0]["schema"] == INVOICE  # earlier versions kept

    # An example alone is checked against the latest schema and stored with it.
    cli(db_url, "event-type", "update", "invoice.paid", "--example", example)
    shown = run_cli("event-type", "show", "invoice.paid", env={"DATABASE_URL": db_url})
    assert shown.returncode == 0, shown.stderr
    assert "schema (version 3):" in shown.stdout and '"currency"' in shown.stdout
    assert '"in_1"' in shown.stdout
    first = run_cli(
        "event-type", "show", "invoice.paid", "--version", "1", env={"DATABASE_URL": db_url}
    )
    assert "schema (version 1):" in first.stdout and '"required"' in first.stdout

    cli(db_url, "event-type", "add", "user.created", "--group", "users")
    listed = cli(db_url, "event-type", "list")
    assert [t["name"] for t in listed] == ["invoice.paid", "user.created"]
    assert [t["name"] for t in cli(db_url, "event-type", "list", "--group", "users")] == [
        "user.created"
    ]
    table = run_cli("event-type", "list", env={"DATABASE_URL": db_url}).stdout
    assert table.splitlines()[0].split() == [
        "NAME", "GROUP", "LATEST_VERSION", "DEPRECATED", "ARCHIVED", "DESCRIPTION",
    ]  # fmt: skip


def test_deprecate_and_archive_with_undo(db_url: str) -> None:
    cli(db_url, "event-type", "add", "order.shipped")
    assert cli(db_url, "event-type", "deprecate", "order.shipped")["deprecated"] is True
    assert cli(db_url, "event-type", "archive", "order.shipped")["archived"] is True
    assert cli(db_url, "event-type", "list") == []
    assert [t["name"] for t in cli(db_url, "event-type", "list", "--archived")] == ["order.shipped"]
    assert cli(db_url, "event-type", "archive", "order.shipped", "--undo")["archived"] is False
    gone = run_cli("event-type", "deprecate", "no.such", env={"DATABASE_URL": db_url})
    assert gone.returncode == 1 and "no event type with id no.such" in gone.stderr


def test_an_endpoint_subscribing_to_an_archived_type_is_told_so(db_url: str) -> None:
    cli(db_url, "event-type", "add", "order.shipped")
    cli(db_url, "event-type", "archive", "order.shipped")
    env = {"DATABASE_URL": db_url, "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"}
    added = run_cli(
        "endpoint", "add", "http://127.0.0.1:9/hook", "--event-type", "order.shipped",
        "--event-type", "order.paid", "--json", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr  # told, not refused
    assert "warning: event type order.shipped is archived in the event-type catalogue" in (
        added.stderr
    )
    endpoint_id = json.loads(added.stdout)["id"]
    updated = run_cli("endpoint", "update", endpoint_id, "--event-type", "order.paid", env=env)
    assert updated.returncode == 0 and "archived" not in updated.stderr


@pytest.mark.parametrize(
    ("args", "files", "expected"),
    [
        (
            ["--schema", "{s}"],
            {"s": {"type": "nope"}},
            "schema is not valid JSON Schema: schema.type",
        ),
        (
            ["--schema", "{s}", "--example", "{e}"],
            {"s": INVOICE, "e": {"invoice": 1, "amount": 2}},
            'example.invoice: 1 is not of type "string"',
        ),
        (["--schema", "{s}"], {"s": "{not json"}, "--schema {s}: not valid JSON"),
        (["--schema", "{s}"], {"s": {"$ref": "http://169.254.169.254/x"}}, "only local references"),
        (["--schema", "/no/such/file.json"], {}, "--schema /no/such/file.json: cannot be read"),
        (["--schema", "{s}"], {"s": {"$schema": "https://x.example/s"}}, "unknown $schema"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    db_url: str, tmp_path: Path, args: list[str], files: dict[str, Any], expected: str
) -> None:
    paths = {key: write(tmp_path / f"{key}.json", value) for key, value in files.items()}
    line = refused(db_url, "event-type", "add", "a.type", *(a.format(**paths) for a in args))
    assert expected.format(**paths) in line
    assert counts(db_url) == (0, 0)


def test_bad_names_and_updates_are_refused(db_url: str, tmp_path: Path) -> None:
    assert "event type" in refused(db_url, "event-type", "add", "bad type!")
    cli(db_url, "event-type", "add", "a.type", "--schema", write(tmp_path / "s.json", INVOICE))
    example = write(tmp_path / "e.json", {"invoice": "x"})
    assert 'example: "amount" is a required property' in refused(
        db_url, "event-type", "update", "a.type", "--example", example
    )
    assert "nothing to update" in refused(db_url, "event-type", "update", "a.type")
    assert counts(db_url) == (1, 1)


OPENAPI = """\
openapi: 3.1.0
info: {title: Shop, version: "1"}
webhooks:
  order.paid:
    post:
      summary: An order was paid
      tags: [orders]
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Envelope'}
            example: {type: order.paid, timestamp: 2026-01-31T12:00:00Z, data: {total: 5}}
  order.refunded:
    post:
      summary: An order was refunded
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Order'}
components:
  schemas:
    Envelope:
      type: object
      properties:
        type: {type: string}
        timestamp: {type: string}
        data: {$ref: '#/components/schemas/Order'}
    Order:
      type: object
      properties:
        total: {type: number}
        placed: {type: string}
"""


def test_import_an_openapi_document_dry_then_for_real_then_again(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(OPENAPI)
    dry = run_cli("event-type", "import", str(path), "--dry-run", env={"DATABASE_URL": db_url})
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was written" in dry.stderr and "order.paid" in dry.stdout
    assert counts(db_url) == (0, 0)

    done = cli(db_url, "event-type", "import", str(path))
    assert [(d["name"], d["action"], d["version"]) for d in done] == [
        ("order.paid", "added", 1),
        ("order.refunded", "added", 1),
    ]
    paid = cli(db_url, "event-type", "show", "order.paid")
    assert paid["description"] == "An order was paid" and paid["group"] == "orders"
    assert paid["example"] == {"total": 5}  # the envelope's data
    assert paid["schema"]["properties"]["total"] == {"type": "number"}

    again = cli(db_url, "event-type", "import", str(path))
    assert {d["action"] for d in again} == {"unchanged"}
    path.write_text(OPENAPI.replace("total: {type: number}", "total: {type: integer}"))
    changed = cli(db_url, "event-type", "import", str(path))
    assert [(d["action"], d["version"]) for d in changed] == [("new schema version", 2)] * 2
    assert counts(db_url) == (2, 4)


def test_import_refuses_a_document_with_no_webhooks_or_a_bad_schema(
    db_url: str, tmp_path: Path
) -> None:
    empty = write(tmp_path / "api.json", {"openapi": "3.1.0", "paths": {}})
    assert refused(db_url, "event-type", "import", empty) == (
        f"error: {empty}: no webhooks: neither `webhooks` (OpenAPI 3.1) nor `x-webhooks` (3.0)"
        " declares any"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(OPENAPI.replace("total: {type: number}", "total: {type: numeral}"))
    line = refused(db_url, "event-type", "import", str(bad))
    assert f"{bad}: webhooks.order.paid: schema is not valid JSON Schema" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("webhooks: [unclosed\n")
    assert f"{broken}: not valid YAML" in refused(db_url, "event-type", "import", str(broken))
    assert counts(db_url) == (0, 0)
