"""How the command line shows values in tables and field lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.cli.output import cell, fields, table

PARIS = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        # Postgres answers in the session's time zone: shown in UTC, and saying so.
        (datetime(2026, 12, 3, 10, 41, 7, 123456, tzinfo=PARIS), "2026-12-03 09:41:07 UTC"),
        (datetime(2026, 12, 3, 9, 41, 7, tzinfo=UTC), "2026-12-03 09:41:07 UTC"),
        (datetime(2026, 12, 3, 9, 41, 7), "2026-12-03 09:41:07 UTC"),
        (None, "-"),
        (True, "yes"),
        ([], "-"),
        (0.5, "0.500"),
    ],
)
def test_a_cell_shows_each_kind_of_value_one_way(value: object, shown: str) -> None:
    assert cell(value) == shown


def test_tables_and_field_lists_show_times_alike() -> None:
    when = datetime(2026, 12, 3, 10, 0, tzinfo=PARIS)
    assert table([{"at": when}], ["at"]).splitlines()[1] == "2026-12-03 09:00:00 UTC"
    assert fields([("at", when)]) == "at: 2026-12-03 09:00:00 UTC"
