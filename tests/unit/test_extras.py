"""Optional publishers stay optional: `import producers` loads no framework, and a missing
extra is one line saying what to install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
#: Each optional module, the library it needs, and the extra that installs it.
OPTIONAL = [
    ("producers.django", "django", "Django", "django"),
    ("producers.sqlalchemy", "sqlalchemy", "SQLAlchemy", "sqlalchemy"),
]


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_importing_producers_loads_no_framework_and_nothing_of_the_worker() -> None:
    done = python(
        "import sys, producers\n"
        "heavy = {'django', 'sqlalchemy', 'opentelemetry', 'worker', 'asyncpg', 'psycopg2'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "library", "name", "extra"), OPTIONAL)
def test_a_missing_extra_is_one_line_naming_the_install(
    module: str, library: str, name: str, extra: str
) -> None:
    # None in sys.modules makes `import library` fail as if it were not installed.
    done = python(f"import sys; sys.modules[{library!r}] = None; import {module}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"producers.errors.ExtraNotInstalled: {module} needs {name}, which is not installed: "
        f"pip install '{DISTRIBUTION}[{extra}]'"
    )
    # It is an ImportError, so `try: import ... except ImportError` still works.
    caught = python(
        f"import sys; sys.modules[{library!r}] = None\n"
        f"try:\n    import {module}\nexcept ImportError as e:\n    print(type(e).__name__)"
    )
    assert caught.stdout.strip() == "ExtraNotInstalled"


def test_without_opentelemetry_publish_stores_no_trace_context() -> None:
    done = python(
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from producers import tracing\n"
        "print(tracing.current(), tracing.current())"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None None"


def test_with_opentelemetry_and_no_span_current_nothing_is_stored() -> None:
    done = python(
        "from producers import tracing\n"
        "import sys\n"
        "print(tracing.current(), 'opentelemetry' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None True"  # loaded by the first call, not by the import
