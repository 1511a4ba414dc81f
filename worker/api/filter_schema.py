"""The JSON Schema of an endpoint's payload filter, as strict as `worker.policy.filters.parse`.

What a schema cannot count is left to the server (422): the filter's size in bytes, its
nesting depth and its number of conditions (`filters.MAX_BYTES`, `MAX_DEPTH`,
`MAX_CONDITIONS`). Everything else the schema allows, the server accepts, and the reverse.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import WithJsonSchema

from worker.policy import filters

REF = "#/components/schemas/Filter"
_NO_NUL = r"^[^\x00]*$"
#: A segment of a data path: an array index (ASCII digits, at most 6), or a key (not only
#: ASCII digits; no dot).
_SEGMENT = r"(?:[0-9]{1,6}|[^.\x00]*[^0-9.\x00][^.\x00]*)"
FIELD = rf"^(?:type|tenant|data(?:\.{_SEGMENT}){{0,{filters.MAX_SEGMENTS}}})$"

_SCALAR = {
    "anyOf": [{"type": ["null", "boolean", "number"]}, {"type": "string", "pattern": _NO_NUL}]
}
_TEXT = {"type": "string", "pattern": _NO_NUL}
_LIST = {"type": "array", "minItems": 1, "maxItems": filters.MAX_CONDITIONS, "items": _SCALAR}
_OPERATORS = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "$eq": _SCALAR,
        "$neq": _SCALAR,
        **{op: {"anyOf": [{"type": "number"}, _TEXT]} for op in filters.COMPARISONS},
        "$in": _LIST,
        "$nin": _LIST,
        "$startsWith": _TEXT,
        "$endsWith": _TEXT,
        "$exist": {"type": "boolean"},
    },
}
_FILTERS = {
    "type": "array",
    "minItems": 1,
    "maxItems": filters.MAX_CONDITIONS,
    "items": {"$ref": REF},
}

SCHEMA: dict[str, Any] = {
    "description": (
        "Deliver only events that pass: fields type, tenant, data and data.<dot.path> (a number"
        " segment indexes an array), each a value ($eq) or operators $eq $neq $gt $gte $lt $lte"
        " $in $nin $startsWith $endsWith $exist, ANDed; $and, $or, $not combine filters."
        f" At most {filters.MAX_BYTES} bytes, {filters.MAX_DEPTH} levels and"
        f" {filters.MAX_CONDITIONS} conditions."
    ),
    "type": "object",
    "minProperties": 1,
    "maxProperties": filters.MAX_CONDITIONS,
    "properties": {"$and": _FILTERS, "$or": _FILTERS, "$not": {"$ref": REF}},
    "patternProperties": {FIELD: {"anyOf": [_SCALAR, _OPERATORS]}},
    "additionalProperties": False,
}

#: An endpoint's filter in a request body: documented by `SCHEMA`, checked by the service.
FilterValue = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": REF}]})]
