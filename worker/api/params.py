"""The query and path parameters the routes share, with their bounds and descriptions."""

# No `from __future__ import annotations`: these aliases are read by FastAPI at runtime.
from typing import Annotated

from fastapi import Path, Query

from worker.api.models import Tenant

MAX_LIMIT = 500
#: The largest id Postgres' bigint holds: a larger one is refused as invalid, not looked up.
BIG = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page.")
]
TenantQuery = Annotated[Tenant | None, Query(description="Admin keys only: act in this tenant.")]
DeliveryId = Annotated[int, Path(ge=1, le=BIG)]
EndpointId = Annotated[str, Path(max_length=64)]
