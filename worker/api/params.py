"""The query and path parameters the routes share, with their bounds and descriptions."""

# No `from __future__ import annotations`: these aliases are read by FastAPI at runtime.
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path, Query

from worker.api.models import BIG, Tenant
from worker.api.paging import cursor_pattern

MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]


def _cursor(*types: type) -> object:
    # The pattern is checked by `decode_cursor` (a 422 of kind bad-cursor), not by FastAPI.
    return Query(
        description="next_cursor of the previous page.",
        json_schema_extra={"pattern": cursor_pattern(*types)},
    )


#: The cursor of a list sorted by UUID (endpoints, events).
UuidCursor = Annotated[str | None, _cursor(uuid.UUID)]
#: The cursor of a list sorted by bigint id (deliveries).
IdCursor = Annotated[str | None, _cursor(int)]
#: The cursor of a list sorted by time, then bigint id (dead letters).
TimeIdCursor = Annotated[str | None, _cursor(datetime, int)]
#: The cursor of a list sorted by name (event types).
NameCursor = Annotated[str | None, _cursor(str)]
TenantQuery = Annotated[Tenant | None, Query(description="Admin keys only: act in this tenant.")]
#: A delivery id: a larger one than bigint holds is refused as invalid, not looked up.
DeliveryId = Annotated[int, Path(ge=1, le=BIG)]
EndpointId = Annotated[str, Path(max_length=64)]
