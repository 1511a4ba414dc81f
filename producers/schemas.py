"""JSON Schemas of event payloads: check a schema, compile it once, validate a payload.

The catalogue (`webhooks event-type`) checks schemas and examples with these, and `publish`
checks payloads with them (WEBHOOKS_VALIDATE_PAYLOADS), so both decide alike.

- A schema is checked against its metaschema: draft 2020-12 unless its ``$schema`` names
  another draft the validator knows (an unknown ``$schema`` is refused).
- Only local references (``#...``) are allowed: a ``$ref`` to another document is refused
  when the schema is checked, and the validator is given no way to fetch one, so validating
  never touches the network.
- Nesting is bounded (`MAX_DEPTH`), so a hostile schema cannot exhaust the stack.
- A compiled validator is cached per schema text (`compile_schema`): callers keep the schema
  of an (event type, version) and pay for compiling it once per process.

Validation uses `jsonschema`, the reference implementation; see the README's "Libraries, and
why" for the measurement against fastjsonschema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.protocols
import referencing
import referencing.exceptions

from producers.errors import InvalidSchema, PayloadMismatch

__all__ = [
    "MAX_DEPTH",
    "check_schema",
    "compile_schema",
    "first_error",
    "first_error_of",
    "validate",
]

#: The deepest nesting of objects and arrays a schema may have.
MAX_DEPTH = 64
_DEFAULT = jsonschema.Draft202012Validator


def check_schema(schema: object) -> Any:
    """Return ``schema`` if it is a valid JSON Schema we can use, else raise InvalidSchema.

    The message is one line: what is wrong and where (a JSON path from the schema's root).
    """
    if not isinstance(schema, dict | bool):
        raise InvalidSchema(f"schema must be a JSON object or boolean, got {_kind(schema)}")
    _check_shape(schema)
    cls = _validator_class(schema)
    if isinstance(schema, dict) and "$schema" in schema:
        meta = str(cls.META_SCHEMA.get("$id") or cls.META_SCHEMA.get("id") or "")
        if str(schema["$schema"]).rstrip("#") != meta.rstrip("#"):
            raise InvalidSchema(f"schema: unknown $schema {schema['$schema']!r}")
    error = jsonschema.exceptions.best_match(cls(cls.META_SCHEMA).iter_errors(schema))
    if error is not None:
        raise InvalidSchema(f"schema is not valid JSON Schema: {_where('schema', error)}")
    return schema


def compile_schema(schema: object) -> jsonschema.protocols.Validator:
    """Return the validator of a checked ``schema``, compiled once per schema text."""
    return _compiled(json.dumps(schema, sort_keys=True, separators=(",", ":")))


def first_error(schema: object, instance: object, root: str = "data") -> str | None:
    """Return the first way ``instance`` fails ``schema`` as one line, or None if it passes.

    The line names the path from ``root``: ``data.amount: 'x' is not of type 'number'``.
    """
    return first_error_of(compile_schema(schema), instance, root)


def first_error_of(
    validator: jsonschema.protocols.Validator, instance: object, root: str = "data"
) -> str | None:
    """`first_error` with a validator already compiled (`compile_schema`): a caller that
    keeps one per (event type, version) skips hashing the schema's text on every call."""
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))  # type: ignore[arg-type]
    except referencing.exceptions.Unresolvable as e:
        return f"{root}: schema reference cannot be resolved ({e})"
    return None if error is None else _where(root, error)


def validate(schema: object, instance: object, root: str = "data") -> None:
    """Raise PayloadMismatch (with the path and the reason) if ``instance`` fails ``schema``."""
    line = first_error(schema, instance, root)
    if line is not None:
        path, _, message = line.partition(": ")
        raise PayloadMismatch(path, message)


@lru_cache(maxsize=512)
def _compiled(text: str) -> jsonschema.protocols.Validator:
    schema = check_schema(json.loads(text))
    cls = _validator_class(schema)
    # An empty registry with no retrieve function: a reference outside the schema is never
    # fetched, it fails to resolve.
    return cls(schema, registry=referencing.Registry())


def _validator_class(schema: object) -> type[jsonschema.protocols.Validator]:
    found: type[jsonschema.protocols.Validator] = jsonschema.validators.validator_for(
        schema,  # type: ignore[arg-type]
        default=_DEFAULT,
    )
    return found


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


def _where(root: str, error: jsonschema.exceptions.ValidationError) -> str:
    return f"{_path(root, error.absolute_path)}: {error.message}"


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
