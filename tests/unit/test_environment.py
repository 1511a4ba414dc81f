"""Every environment variable is read in `worker.settings` and nowhere else.

Library code takes a `Settings` (STYLE: configuration is a typed object built once at the entry
point). Copying the whole environment for a child process (`dict(os.environ)`,
`{**os.environ}`) reads no variable and is allowed. The producers library reads its own
variables in one documented module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from worker.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "worker" / "settings.py"
#: The producers library's one reader (README, Settings).
PRODUCERS_READER = ROOT / "producers" / "settings.py"


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _reads_one(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        func = node.func
        return func.attr == "getenv" or (func.attr == "get" and _is_environ(func.value))
    if isinstance(node, ast.Subscript):
        return _is_environ(node.value)
    if isinstance(node, ast.Compare):
        return any(_is_environ(c) for c in node.comparators)
    return False


def reads(tree: ast.AST) -> list[int]:
    """Return the lines that read one variable of the environment."""
    return [node.lineno for node in ast.walk(tree) if _reads_one(node)]


def _sources() -> list[Path]:
    return sorted(
        p for p in [*(ROOT / "worker").rglob("*.py"), *(ROOT / "producers").rglob("*.py")]
    )


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_but_settings_reads_the_environment(path: Path) -> None:
    if path in (SETTINGS, PRODUCERS_READER):
        return
    assert reads(ast.parse(path.read_text("utf-8"))) == []


def test_the_check_sees_each_way_of_reading_a_variable() -> None:
    for source in (
        "os.environ.get('X')",
        "os.getenv('X')",
        "os.environ['X']",
        "'X' in os.environ",
    ):
        assert reads(ast.parse(source)) == [1], source
    assert reads(ast.parse("env = {**os.environ, 'A': 'b'}\nchild = dict(os.environ)")) == []


def test_settings_lists_every_variable_it_reads() -> None:
    named = set(
        re.findall(
            r'"((?:WEBHOOKS|REDIS|DATABASE|PROMETHEUS)_[A-Z_]+)"', SETTINGS.read_text("utf-8")
        )
    )
    assert named == set(VARIABLES)


def test_the_readme_documents_every_setting_an_operator_sets() -> None:
    # WEBHOOKS_WORKER_CONCURRENCY and PROMETHEUS_MULTIPROC_DIR are set by `webhooks worker`
    # for its own processes; the README names them beside the table.
    readme = (ROOT / "README.md").read_text("utf-8")
    missing = [name for name in VARIABLES if f"`{name}`" not in readme]
    assert missing == []
