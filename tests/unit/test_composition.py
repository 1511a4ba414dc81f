"""The composition root is the only builder: entry points use `worker.app`, nothing else.

Read from the source: every import a module's syntax tree holds, at the top or inside a
function, and every pool constructor its text calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "worker"

#: The processes' entry points: they build an App (the actors build each worker's engine).
ENTRY_POINTS = ("worker.cli", "worker.api", "worker.portal", "worker.dev", "worker.engine.actors")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


SOURCES = {module_name(path): path for path in sorted(WORKER.rglob("*.py"))}


def test_only_entry_points_import_the_app() -> None:
    importers = [
        name
        for name, path in SOURCES.items()
        if name != "worker.app" and any(within(target, ("worker.app",)) for target in imports(path))
    ]
    assert importers
    assert [name for name in importers if not within(name, ENTRY_POINTS)] == []


def test_observe_reads_the_relay_through_a_protocol_not_its_module() -> None:
    offenders = [
        name
        for name, path in SOURCES.items()
        if within(name, ("worker.observe",))
        and any(within(target, ("worker.relay",)) for target in imports(path))
    ]
    assert offenders == []


def test_only_the_app_builds_a_connection_pool() -> None:
    builders = [
        name for name, path in SOURCES.items() if "ConnectionPool(" in path.read_text("utf-8")
    ]
    assert builders == ["worker.app"]
