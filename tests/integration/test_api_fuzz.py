"""A schema-driven fuzz run of the HTTP API (schemathesis), on a small budget.

Every operation of the OpenAPI document gets generated requests, valid and invalid:
none may answer 5xx, and every answer must match the document (status code, content type,
body schema). `WEBHOOKS_FUZZ_EXAMPLES` raises the budget per operation.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import psycopg
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.pipeline import LOOPBACK
from worker.api import create_app
from worker.ops import apikeys
from worker.settings import Settings

EXAMPLES = int(os.environ.get("WEBHOOKS_FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_operation_answers_5xx_or_off_its_schema(db_url: str, redis_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        key = apikeys.create(conn, "fuzz", tenant_id="acme")[1]
    app = create_app(Settings(database_url=db_url, redis_url=redis_url, allowed_networks=LOOPBACK))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 20  # every route of issue 17, and POST /v1/portal-links
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers={"authorization": f"Bearer {key}"}, checks=CHECKS)

        fuzz()
    app.state.services.close()
