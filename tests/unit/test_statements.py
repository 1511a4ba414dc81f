"""The publish statements: one list of columns, each driver's parameter marks."""

from __future__ import annotations

import json
import re
import uuid

from producers import catalogue
from producers.statements import (
    ASYNCPG,
    COLUMNS,
    FORMAT,
    INSERT_DOCUMENT,
    INSERT_MANY,
    INSERT_ONE,
    PSYCOPG,
    document,
    render,
)

STATEMENTS = (INSERT_ONE, INSERT_MANY, INSERT_DOCUMENT, catalogue.LOOKUP)


def test_every_insert_names_every_column_in_order() -> None:
    names = ", ".join(c.name for c in COLUMNS)
    for sql in (INSERT_ONE, INSERT_MANY, INSERT_DOCUMENT):
        assert f"({names})" in sql


def test_each_insert_takes_one_value_per_column() -> None:
    assert INSERT_ONE.count("%s") == len(COLUMNS)
    assert INSERT_MANY.count("%b") == len(COLUMNS)
    assert INSERT_DOCUMENT.count("%s") == 1


def test_asyncpg_gets_numbered_parameters_in_order() -> None:
    for sql in STATEMENTS:
        rendered = render(sql, ASYNCPG)
        marks = re.findall(r"\$(\d+)", rendered)
        assert marks == [str(n) for n in range(1, len(marks) + 1)]
        assert "%s" not in rendered and "%b" not in rendered


def test_client_side_binding_gets_no_binary_parameter() -> None:
    for sql in STATEMENTS:
        assert "%b" not in render(sql, FORMAT)
    assert render(INSERT_MANY, PSYCOPG) == INSERT_MANY


def test_the_document_keeps_payloads_as_json_and_writes_the_rest_as_strings() -> None:
    event_id = uuid.uuid4()
    trace = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
    doc = document([(event_id, "acme", "a.b", '{"x":[1,"é"]}', None, "k", trace)])
    assert json.loads(doc) == [
        [str(event_id), "acme", "a.b", {"x": [1, "é"]}, None, "k", json.loads(trace)]
    ]
    assert document([]) == "[]"
    # Quotes, backslashes and newlines in a key survive the trip.
    tricky = 'a"b\\c\nd'
    row = (event_id, tricky, "a.b", "null", tricky, None, None)
    assert json.loads(document([row]))[0][4] == tricky


def test_a_null_payload_stays_json_null_and_a_missing_trace_context_is_sql_null() -> None:
    assert "r -> 3," in INSERT_DOCUMENT  # payload: JSON null is a payload like any other
    assert "nullif(r -> 6, 'null')" in INSERT_DOCUMENT  # trace_context: absent
