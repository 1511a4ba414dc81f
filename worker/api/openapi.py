"""Print the API's OpenAPI 3.1 document: ``python -m worker.api.openapi > docs/openapi.json``.

The committed docs/openapi.json is this output; a test fails when the two differ.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from worker.api.app import create_app
from worker.settings import Settings


def document() -> dict[str, Any]:
    """Return the OpenAPI document of the app (no database needed)."""
    spec: dict[str, Any] = create_app(Settings()).openapi()
    return spec


def render() -> str:
    """Return the document as committed: indented, keys in the app's order, final newline."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
