"""A statement may include another by name, so a shared part of SQL has one source."""

from __future__ import annotations

import re

import pytest

from worker.store import queries
from worker.store.queries import StatementError, include


def test_an_include_line_is_replaced_by_the_named_statement_indented_alike() -> None:
    statements = {"filter": "a = 1\nand b = 2"}
    sql = "select * from t\nwhere\n    -- include: filter\norder by a"
    expected = "select * from t\nwhere\n    a = 1\n    and b = 2\norder by a"
    assert include(sql, statements) == expected


def test_includes_nest() -> None:
    statements = {"inner": "x = 1", "outer": "y = 2 and\n-- include: inner"}
    assert include("where\n  -- include: outer", statements) == "where\n  y = 2 and\n  x = 1"


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        ({}, "names no statement"),
        ({"part": "a and\n-- include: part"}, "includes itself"),
    ],
)
def test_a_bad_include_is_refused(statements: dict[str, str], message: str) -> None:
    with pytest.raises(StatementError, match=message):
        include("where\n-- include: part", statements)


def test_every_bound_statement_is_whole() -> None:
    for name, sql in queries.STATEMENTS.items():
        assert "-- include:" not in sql, name


def _words(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


@pytest.mark.parametrize(
    ("part", "users"),
    [
        (queries.PRUNABLE_EVENTS, (queries.PRUNE_BATCH, queries.PRUNE_DRY_RUN)),
        (queries.PRUNE_COUNTS, (queries.PRUNE_BATCH, queries.PRUNE_DRY_RUN)),
        (
            queries.DEAD_LETTERS_SELECTED,
            (
                queries.LIST_DEAD_LETTERS,
                queries.COUNT_DEAD_LETTERS,
                queries.DISABLED_SELECTED_ENDPOINTS,
                queries.REPLAY_BATCH,
            ),
        ),
        (queries.REARM, (queries.REPLAY_BATCH, queries.RESEND)),
        (queries.MARK_REPLAYED, (queries.REPLAY_BATCH, queries.RESEND)),
    ],
)
def test_statements_that_must_agree_share_one_part(part: str, users: tuple[str, ...]) -> None:
    for sql in users:
        assert _words(part) in _words(sql)
