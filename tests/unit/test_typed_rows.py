"""Only `worker/store` runs SQL: everything else reads typed rows, never ``row["column"]``.

"No module outside the store indexes a SQL row by a string" cannot be read off a syntax tree
in general, so the test checks the rule that says the same: outside ``worker/store`` no
module imports ``psycopg.rows`` (``dict_row`` and the other row factories) or the named
statements of ``worker.store.queries``. A module that cannot run a statement or ask for dict
rows can only get rows from a store function, as frozen dataclasses
(`worker.store.rows` explains the pattern).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from worker.store.rows import typed

ROOT = Path(__file__).resolve().parents[2]

#: What only the store imports.
FORBIDDEN = ("psycopg.rows", "worker.store.queries")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def worker_modules() -> list[str]:
    return sorted(module_name(p) for p in (ROOT / "worker").rglob("*.py"))


def outside_store(name: str) -> bool:
    return name != "worker.store" and not name.startswith("worker.store.")


def forbidden_imports(name: str) -> Iterator[str]:
    """Yield each forbidden module ``name`` imports, wherever in the file the import is."""
    path = ROOT / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in found:
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN):
                yield f"{name}:{node.lineno} imports {target}"


def test_only_the_store_runs_sql_or_reads_dict_rows() -> None:
    broken = [
        line for name in worker_modules() if outside_store(name) for line in forbidden_imports(name)
    ]
    assert broken == [], "run SQL through a worker/store module (see worker/store/rows.py)"


@dataclass(frozen=True)
class Row:
    id: str
    n: int
    note: str = "none"


def make(*columns: str) -> Any:
    cursor = SimpleNamespace(description=[SimpleNamespace(name=c) for c in columns])
    return typed(Row)(cursor)  # type: ignore[arg-type]


def test_a_row_takes_the_columns_its_class_names_and_leaves_the_others_out() -> None:
    assert make("id", "added_later", "n")(("a", "x", 2)) == Row("a", 2)


def test_a_row_returning_every_field_in_another_order_is_taken_by_position() -> None:
    assert make("note", "x", "n", "id")(("hi", 0, 2, "a")) == Row("a", 2, "hi")


def test_a_repeated_column_keeps_its_last_value_as_dict_rows_did() -> None:
    assert make("id", "n", "id")((1, 2, "1")) == Row("1", 2)


def test_a_field_the_statement_does_not_return_takes_its_default_or_fails() -> None:
    assert make("id", "n")(("a", 2)).note == "none"
    with pytest.raises(TypeError):
        make("id")(("a",))
