"""JSON Schemas of event payloads: check a schema, compile it once, validate a payload.

The catalogue (`webhooks event-type`) checks schemas and examples with these, and `publish`
checks payloads with them (WEBHOOKS_VALIDATE_PAYLOADS), so both decide alike.

- A schema is checked against its metaschema: draft 2020-12 unless its ``$schema`` names
  draft 4, 6, 7 or 2019-09 (any other ``$schema`` is refused), and it must compile (a
  ``pattern`` must be a regular expression the validator can run).
- Only local references (``#...``) are allowed: a ``$ref`` to another document is refused
  when the schema is checked, and the validator is given no way to fetch one (compiled
  ``offline``, the metaschema check given a registry whose retriever refuses), so checking
  and validating never touch the network. A local reference that does not resolve fails
  every payload with that reason.
- Nesting is bounded (`MAX_DEPTH`), so a hostile schema cannot exhaust the stack.
- A compiled validator is cached per schema text (`compile_schema`): callers keep the schema
  of an (event type, version) and pay for compiling it once per process.
- When a payload fails in several ways, the error reported is the shallowest (the first of
  those nearest the payload's root), as jsonschema's ``best_match`` preferred.

Validation uses `jsonschema_rs` (Rust); see the README's "Libraries, and why" for the
measurement against jsonschema and fastjsonschema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

import jsonschema_rs

from producers.errors import InvalidSchema, PayloadMismatch

__all__ = [
    "MAX_DEPTH",
    "Compiled",
    "Unresolvable",
    "check_schema",
    "compile_schema",
    "first_error",
    "mismatch",
    "validate",
]

#: The deepest nesting of objects and arrays a schema may have.
MAX_DEPTH = 64
#: The metaschemas a ``$schema`` may name (without a trailing ``#``); none means 2020-12.
DRAFTS = frozenset(
    {
        "http://json-schema.org/draft-04/schema",
        "http://json-schema.org/draft-06/schema",
        "http://json-schema.org/draft-07/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "https://json-schema.org/draft/2020-12/schema",
    }
)


@dataclass(frozen=True)
class Unresolvable:
    """A checked schema whose local reference does not resolve: every payload fails."""

    reason: str


Compiled: TypeAlias = jsonschema_rs.Validator | Unresolvable


def check_schema(schema: object) -> Any:
    """Return ``schema`` if it is a valid JSON Schema we can use, else raise InvalidSchema.

    The message is one line: what is wrong and where (a JSON path from the schema's root).
    """
    compile_schema(schema)
    return schema


def compile_schema(schema: object) -> Compiled:
    """Return the validator of a checked ``schema``, compiled once per schema text."""
    return _compiled(json.dumps(schema, sort_keys=True, separators=(",", ":")))


def first_error(schema: object, instance: object, root: str = "data") -> str | None:
    """Return the first way ``instance`` fails ``schema`` as one line, or None if it passes.

    The line names the path from ``root``: ``data.amount: "x" is not of type "number"``.
    """
    found = mismatch(compile_schema(schema), instance, root)
    return None if found is None else str(found)


def mismatch(validator: Compiled, instance: object, root: str = "data") -> PayloadMismatch | None:
    """Return how ``instance`` fails a compiled validator (path and reason), or None.

    For callers that keep the validator `compile_schema` returned (publish keeps one per
    event type and schema version), so each payload skips the schema-text cache lookup.
    """
    if isinstance(validator, Unresolvable):
        return PayloadMismatch(root, f"schema reference cannot be resolved ({validator.reason})")
    if validator.is_valid(instance):
        return None
    error = min(validator.iter_errors(instance), key=lambda e: len(e.instance_path))
    return PayloadMismatch(_path(root, error.instance_path), error.message)


def validate(schema: object, instance: object, root: str = "data") -> None:
    """Raise PayloadMismatch (with the path and the reason) if ``instance`` fails ``schema``."""
    found = mismatch(compile_schema(schema), instance, root)
    if found is not None:
        raise found


def _refuse(uri: str) -> Any:
    raise ValueError(f"{uri} is not fetched")


# The metaschemas are built in; anything else the metaschema check would fetch is refused.
_NO_FETCH = jsonschema_rs.Registry([], retriever=_refuse)


@lru_cache(maxsize=512)
def _compiled(text: str) -> Compiled:
    schema = json.loads(text)
    if not isinstance(schema, dict | bool):
        raise InvalidSchema(f"schema must be a JSON object or boolean, got {_kind(schema)}")
    _check_shape(schema)
    named = schema.get("$schema") if isinstance(schema, dict) else None
    if named is not None and str(named).rstrip("#") not in DRAFTS:
        raise InvalidSchema(f"schema: unknown $schema {named!r}")
    try:
        jsonschema_rs.meta.validate(schema, registry=_NO_FETCH)
    except jsonschema_rs.ValidationError as e:
        raise InvalidSchema(f"schema is not valid JSON Schema: {_where(e)}") from None
    try:
        return jsonschema_rs.validator_for(schema, offline=True)
    except jsonschema_rs.ValidationError as e:
        if isinstance(e.kind, jsonschema_rs.ValidationErrorKind.Referencing):
            return Unresolvable(e.message)
        raise InvalidSchema(f"schema cannot be compiled: {_where(e)}") from None


def _check_shape(schema: object) -> None:
    """Refuse nesting deeper than MAX_DEPTH and any reference outside the schema."""
    todo: list[tuple[object, tuple[str | int, ...]]] = [(schema, ())]
    while todo:
        node, path = todo.pop()
        if len(path) > MAX_DEPTH:
            raise InvalidSchema(
                f"schema nests deeper than {MAX_DEPTH} levels at {_path('schema', path)}"
            )
        if isinstance(node, dict):
            for key in ("$ref", "$dynamicRef"):
                ref = node.get(key)
                if isinstance(ref, str) and not ref.startswith("#"):
                    raise InvalidSchema(
                        f"schema {key} {ref!r} at {_path('schema', path)}: only local"
                        " references (#...) are allowed"
                    )
            todo.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            todo.extend((value, (*path, i)) for i, value in enumerate(node))


def _where(error: jsonschema_rs.ValidationError) -> str:
    return f"{_path('schema', error.instance_path)}: {error.message}"


def _path(root: str, parts: Iterable[str | int]) -> str:
    text = root
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
