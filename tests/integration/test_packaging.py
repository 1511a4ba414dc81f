"""The built wheel is installable on its own: it ships the migrations and py.typed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_migrations_and_type_markers(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "schema").glob("*.sql")}
    assert shipped and {f"worker/migrations/{n}" for n in shipped} <= names
    assert {"producers/py.typed", "worker/py.typed"} <= names
    # Every module of every subpackage, and the SQL the store reads at import: a plain
    # install once lacked worker/engine.
    modules = {
        p.relative_to(ROOT).as_posix()
        for package in ("worker", "producers")
        for p in (ROOT / package).rglob("*.py")
    }
    statements = {p.relative_to(ROOT).as_posix() for p in (ROOT / "worker").rglob("*.sql")}
    assert statements and modules | statements <= names
    # /docs's own script: the page is blank without it.
    assets = {p.relative_to(ROOT).as_posix() for p in (ROOT / "worker/api/static").iterdir()}
    assert assets and assets <= names
    assert not any(n.startswith("tests/") for n in names)
    # The portal's templates and assets: it makes no request outside the wheel.
    assets = {
        p.relative_to(ROOT).as_posix()
        for folder in ("templates", "static")
        for p in (ROOT / "worker" / "portal" / folder).iterdir()
    }
    assert assets and assets <= names
