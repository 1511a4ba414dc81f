"""A minimal Django project for the tests: one app with one model, one view.

The database comes from WEBHOOKS_TEST_DJANGO_DB (a postgresql:// URL); a second alias,
``other``, reaches the same database on a connection of its own.
WEBHOOKS_TEST_DJANGO_BINDING=server sets psycopg 3's server-side binding.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ["WEBHOOKS_TEST_DJANGO_DB"])
_options: dict[str, Any] = {}
if os.environ.get("WEBHOOKS_TEST_DJANGO_BINDING") == "server":
    _options["server_side_binding"] = True
_database = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": _url.path.lstrip("/"),
    "USER": unquote(_url.username or ""),
    "PASSWORD": unquote(_url.password or ""),
    "HOST": _url.hostname or "",
    "PORT": str(_url.port or ""),
    "OPTIONS": _options,
}

SECRET_KEY = "tests-only"
DEBUG = os.environ.get("WEBHOOKS_TEST_DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["producers.django", "tests.django_site.shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.django_site.urls"
DATABASES = {"default": _database, "other": dict(_database)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
