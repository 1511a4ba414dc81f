"""The layers keep their direction: pure policy reaches no I/O, producers never the worker.

Read from the source, not from a running interpreter: every `import` a module's syntax tree
holds (at the top, inside functions, under TYPE_CHECKING alike) is followed through
`worker.*` modules and their packages' `__init__`, the way Python runs them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Libraries that talk to the outside: a pure decision imports none of them.
IO_LIBRARIES = frozenset(
    {
        "psycopg",
        "psycopg_pool",
        "redis",
        "httpx",
        "aiohttp",
        "pika",
        "dramatiq",
        "fastapi",
        "socket",
    }
)
#: Layers that sit above the pure decisions and may call them, never the other way.
ABOVE_POLICY = ("worker.store", "worker.queue", "worker.engine", "worker.ops")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_of(name: str) -> Path | None:
    """Return the file of a project module, or None when `name` is not one."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def modules_under(package: str) -> list[str]:
    return sorted(module_name(p) for p in (ROOT / package).rglob("*.py"))


def imported(name: str) -> Iterator[str]:
    """Yield every module `name` imports: `from a import b` names both a and a.b."""
    path = source_of(name)
    assert path is not None, name
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def with_packages(name: str) -> Iterator[str]:
    """Yield `name` and the packages whose `__init__` importing it runs first."""
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])


def reach(start: str) -> dict[str, list[str]]:
    """Return every module `start` loads, each with the chain of imports that loads it."""
    chains: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for target in imported(current):
            for name in with_packages(target):
                if name in chains:
                    continue
                if name.split(".")[0] == "worker" and source_of(name) is None:
                    continue  # `from package import function`: not a module
                chains[name] = [*chains[current], name]
                if name.split(".")[0] == "worker":
                    todo.append(name)
    return chains


def offending(chains: dict[str, list[str]], forbidden: tuple[str, ...]) -> list[str]:
    return [
        " -> ".join(chain)
        for name, chain in sorted(chains.items())
        if any(name == f or name.startswith(f"{f}.") for f in forbidden)
    ]


POLICY = modules_under("worker/policy")


def test_the_walk_finds_the_modules_it_checks() -> None:
    assert "worker.policy.plan" in POLICY
    assert "worker.policy.retry" in reach("worker.policy.plan")
    assert "psycopg" in reach("worker.store.db")


@pytest.mark.parametrize("module", POLICY)
def test_a_policy_module_reaches_no_io_library(module: str) -> None:
    chains = offending(reach(module), IO_LIBRARIES)
    assert not chains, "\n".join(chains)


@pytest.mark.parametrize("module", POLICY)
def test_a_policy_module_imports_no_layer_above_it(module: str) -> None:
    chains = offending(reach(module), ABOVE_POLICY)
    assert not chains, "\n".join(chains)


@pytest.mark.parametrize("module", modules_under("producers"))
def test_a_producers_module_never_imports_the_worker(module: str) -> None:
    # Producers install the outbox into an application's own process, without the worker.
    assert [name for name in imported(module) if name.split(".")[0] == "worker"] == []
