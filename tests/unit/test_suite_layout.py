"""The README's test command runs every test folder, unit tests first."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_folder_is_collected_and_unit_tests_come_first() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    paths = config["tool"]["pytest"]["ini_options"]["testpaths"]
    folders = {f"tests/{p.parent.name}" for p in (ROOT / "tests").glob("*/test_*.py")}
    assert folders <= set(paths), f"not collected by `pytest`: {sorted(folders - set(paths))}"
    assert paths[0] == "tests/unit"
