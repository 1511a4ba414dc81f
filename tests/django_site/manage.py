"""The test site's manage.py: run from the repository's top, `python tests/django_site/manage.py`.

WEBHOOKS_TEST_DJANGO_DRIVER=psycopg2 makes Django's PostgreSQL backend load psycopg2: Django
prefers psycopg 3 whenever it can import it, and this package depends on psycopg 3, so an
application only runs Django on psycopg2 through a backend of its own; the test hides
psycopg 3 from Django's backend while it loads, and only then.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def load_backend_on_psycopg2() -> None:
    """Import Django's PostgreSQL backend while psycopg 3 cannot be imported."""
    saved = {
        name: module for name, module in sys.modules.items() if name.split(".")[0] == "psycopg"
    }
    sys.modules["psycopg"] = None  # type: ignore[assignment]
    try:
        import django.db.backends.postgresql.base as base

        assert base.Database.__name__ == "psycopg2"
    finally:
        del sys.modules["psycopg"]
        sys.modules.update(saved)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_site.settings")
    if os.environ.get("WEBHOOKS_TEST_DJANGO_DRIVER") == "psycopg2":
        load_backend_on_psycopg2()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
