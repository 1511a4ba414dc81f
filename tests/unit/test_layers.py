"""The layers keep their direction: the whole tree is an ordered contract (`LAYERS`), pure
policy reaches no I/O library, producers never import the worker.

Read from the source, not from a running interpreter: every `import` a module's syntax tree
holds (at the top, inside functions, under TYPE_CHECKING alike) is followed through
`worker.*` modules and their packages' `__init__`, the way Python runs them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


@pytest.mark.parametrize("module", modules_under("producers"))
def test_a_producers_module_never_imports_the_worker(module: str) -> None:
    # Producers install the outbox into an application's own process, without the worker.
    # Django's management commands are entry points (LAYERS): Django imports one only to run
    # it, never when the application imports producers.django.
    if module.startswith("producers.django.management."):
        assert place(module) == (0, "producers.django.management")
        return
    assert [name for name in imported(module) if name.split(".")[0] == "worker"] == []


@dataclass(frozen=True)
class Layer:
    name: str
    packages: tuple[str, ...]
    #: Whether its packages may import one another (else each stands alone on those below).
    mingled: bool = False


#: The whole tree, top to bottom. A module imports from its own package, from the packages of
#: its layer when the layer is mingled, and from the layers below; never from one above.
#: The longest matching package names a module's place: ``worker.engine.actors`` is an entry
#: point although the rest of ``worker.engine`` is a daemon.
LAYERS = (
    Layer(
        "entry points",
        (
            "worker.cli",
            "worker.api",
            "worker.portal",
            "worker.bench",
            "worker.dev",
            "worker.engine.actors",
            "worker.engine.launcher",
            # manage.py webhooks_migrate runs the worker's migrations.
            "producers.django.management",
        ),
        mingled=True,
    ),
    Layer("composition root", ("worker.app",)),
    Layer("services and daemons", ("worker.ops", "worker.engine", "worker.relay")),
    Layer("observation", ("worker.observe",)),
    Layer("the wire", ("worker.delivery",)),
    Layer(
        "stores, queues, settings",
        ("worker.store", "worker.queue", "worker.outages", "worker.settings"),
        mingled=True,
    ),
    Layer("pure decisions", ("worker.policy",)),
    Layer("foundations", ("worker.errors", "producers"), mingled=True),
)


def place(name: str) -> tuple[int, str] | None:
    """Return (layer index, package) of a project module, or None when no layer names it."""
    found: tuple[int, str] | None = None
    for rank, layer in enumerate(LAYERS):
        for package in layer.packages:
            inside = name == package or name.startswith(f"{package}.")
            if inside and (found is None or len(package) > len(found[1])):
                found = (rank, package)
    return found


TREE = [m for m in modules_under("worker") + modules_under("producers") if m != "worker"]


def test_every_module_has_a_place_in_the_layers() -> None:
    # A new package is placed on purpose, in LAYERS, before anything may import it.
    assert [name for name in TREE if place(name) is None] == []


def upward_imports(module: str, targets: Iterable[str]) -> list[str]:
    """Return, one line each, the imports of `module` (named by `targets`) that go upward."""
    here = place(module)
    assert here is not None, module
    rank, package = here
    found = set()
    for target in targets:
        for name in with_packages(target):
            there = place(name) if source_of(name) is not None else None
            if there is None or there[1] == package:
                continue
            if there[0] < rank or (there[0] == rank and not LAYERS[rank].mingled):
                found.add(
                    f"{module} ({LAYERS[rank].name}) imports {name} ({LAYERS[there[0]].name})"
                )
    return sorted(found)


def test_the_contract_refuses_an_upward_or_sideways_import() -> None:
    assert place("worker.engine.actors") == (0, "worker.engine.actors")
    assert place("worker.engine.writer") == (2, "worker.engine")
    assert upward_imports("worker.store.db", ["worker.engine.engine"])
    assert upward_imports("worker.observe.metrics", ["worker.relay.daemon"])
    assert upward_imports("worker.ops.ping", ["worker.engine.writer"])  # services / daemons
    assert upward_imports("worker.engine.writer", ["worker.relay.daemon"])  # daemon / daemon
    assert upward_imports("worker.delivery.attempt", ["worker.app"])
    assert upward_imports("worker.cli.endpoint", ["worker.api.app"]) == []  # entry points mingle
    assert upward_imports("worker.engine.writer", ["worker.engine.database"]) == []
    assert upward_imports("worker.ops.ping", ["worker.delivery.attempt", "psycopg"]) == []


@pytest.mark.parametrize("module", TREE)
def test_a_module_imports_nothing_from_a_layer_above_it(module: str) -> None:
    upward = upward_imports(module, imported(module))
    assert upward == [], "\n".join(upward)


def test_only_the_composition_root_builds_a_connection_pool() -> None:
    # Pools, queues and clients are built once, by worker.app.App, and handed down.
    builders = [
        module_name(path)
        for path in sorted((ROOT / "worker").rglob("*.py"))
        if "ConnectionPool(" in path.read_text("utf-8")
    ]
    assert builders == ["worker.app"]
