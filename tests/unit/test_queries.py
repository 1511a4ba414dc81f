"""The SQL statements are read from the store's `.sql` files by name, each bound once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.store import queries
from worker.store.queries import StatementError, parse


def test_a_file_splits_into_named_statements_without_their_leading_comments() -> None:
    text = (
        "-- name: first\n-- why it is written so\nselect 1;\n\n"
        "-- name: second\nselect %(x)s\n-- a comment inside stays\nfrom t;\n"
    )
    assert parse(text) == {
        "first": "select 1",
        "second": "select %(x)s\n-- a comment inside stays\nfrom t",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("select 1;\n-- name: a\nselect 2;", "before the first"),
        ("-- name: a\nselect 1;\n-- name: a\nselect 2;", "named twice"),
        ("-- name: a\n-- only a comment\n", "is empty"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        parse(text, "x.sql")


def test_every_statement_in_the_files_is_bound_to_exactly_one_constant() -> None:
    bound = {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str) and name != "FILES"
    }
    assert {name.lower() for name in bound} == set(queries.STATEMENTS)
    for name, value in bound.items():
        assert value == queries.STATEMENTS[name.lower()]


def test_values_are_parameters_never_formatted_into_the_text() -> None:
    for name, sql in queries.STATEMENTS.items():
        assert "{" not in sql, name
        # Every % is a psycopg placeholder: a stray one would break every call.
        assert not re.search(r"%(?!\(\w+\)s)", sql), name


def test_a_source_checkout_finds_the_migrations_at_the_top_of_the_repository() -> None:
    # Tests run from a checkout import `worker` from it, where worker.migrations (the wheel's
    # name for schema/) does not exist; the fallback once pointed at worker/schema.
    from worker.store.migrate import SOURCE_SCHEMA

    assert Path(__file__).resolve().parents[2] / "schema" == SOURCE_SCHEMA
    assert sorted(p.name for p in SOURCE_SCHEMA.glob("0001_*.sql")) == ["0001_initial.sql"]
