"""The event types an OpenAPI document declares: its ``webhooks`` (3.1) or ``x-webhooks``
(3.0) section, read into what `webhooks event-type import` adds to the catalogue.

Pure: a parsed document in, `Declared` entries out, or InvalidSchema naming the place. Each
key of the section is an event type; its operation (``post`` usually) gives the description
(``summary``, else ``description``), the group (its first tag), the schema of its
``application/json`` request body and an example (the media type's ``example`` or first
``examples`` value, else the schema's). Local ``$ref``s into ``components`` are followed;
references into ``components/schemas`` from inside the schema become ``$defs`` of the
imported schema, so shared and recursive schemas keep working. A Standard Webhooks envelope
(properties ``type``, ``timestamp`` and ``data``) gives ``data``'s schema and example: the
catalogue describes the payload, which is ``data``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from producers.errors import InvalidSchema

__all__ = ["Declared", "declared"]

_METHODS = ("post", "put", "patch", "get", "delete", "options", "head", "trace")
_SCHEMAS = "#/components/schemas/"
_ENVELOPE = frozenset({"type", "timestamp", "data"})
MAX_DESCRIPTION = 1000


@dataclass(frozen=True)
class Declared:
    """One event type as the document declares it (None: the document says nothing)."""

    name: str
    description: str
    group: str | None
    schema: Any
    example: Any


def declared(document: object, source: str = "the document") -> list[Declared]:
    """Return the event types of an OpenAPI document's webhooks, in the document's order."""
    if not isinstance(document, Mapping):
        raise InvalidSchema(f"{source}: not an OpenAPI document (a JSON or YAML object)")
    section = document.get("webhooks") or document.get("x-webhooks")
    if not isinstance(section, Mapping) or not section:
        raise InvalidSchema(
            f"{source}: no webhooks: neither `webhooks` (OpenAPI 3.1) nor `x-webhooks` (3.0)"
            " declares any"
        )
    return [
        _one(document, str(name), item, f"{source}: webhooks.{name}")
        for name, item in section.items()
    ]


def _one(document: Mapping[str, Any], name: str, item: object, where: str) -> Declared:
    item = _deref(document, item, where)
    operation = next((item[m] for m in _METHODS if isinstance(item, Mapping) and m in item), None)
    if not isinstance(operation, Mapping):
        raise InvalidSchema(f"{where}: no operation (post, put, ...)")
    text = operation.get("summary") or operation.get("description") or ""
    if not isinstance(text, str):
        raise InvalidSchema(f"{where}: summary is not text")
    text = text.strip()
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1] + "…"
    tags = operation.get("tags")
    group = str(tags[0]) if isinstance(tags, list) and tags else None
    body = _deref(document, operation.get("requestBody"), f"{where}.requestBody")
    media = _json_media(body)
    if media is None:
        return Declared(name, text, group, None, None)
    schema = media.get("schema")
    example = _example(media)
    if schema is None:
        return Declared(name, text, group, None, example)
    schema = _deref(document, schema, f"{where}.schema")
    if _is_envelope(schema):
        schema = _deref(document, schema["properties"]["data"], f"{where}.schema.data")
        if isinstance(example, Mapping) and example.keys() >= _ENVELOPE:
            example = example["data"]
    if example is None and isinstance(schema, Mapping):
        example = schema.get("example", _first(schema.get("examples")))
    return Declared(name, text, group, _with_defs(document, schema, where), example)


def _deref(document: Mapping[str, Any], node: object, where: str) -> Any:
    """Follow a node's local ``$ref`` (again while it is one); None stays None."""
    seen: set[str] = set()
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen:
            raise InvalidSchema(f"{where}: $ref {ref!r} refers to itself")
        seen.add(ref)
        node = _pointer(document, ref, where)
    return node


def _pointer(document: Mapping[str, Any], ref: str, where: str) -> Any:
    if not ref.startswith("#/"):
        raise InvalidSchema(f"{where}: $ref {ref!r}: only references inside the document")
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise InvalidSchema(f"{where}: $ref {ref!r} names nothing in the document")
    return node


def _json_media(body: object) -> Mapping[str, Any] | None:
    content = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(content, Mapping):
        return None
    for kind in ("application/json", *sorted(k for k in content if str(k).endswith("+json"))):
        if isinstance(content.get(kind), Mapping):
            found: Mapping[str, Any] = content[kind]
            return found
    return None


def _example(media: Mapping[str, Any]) -> Any:
    if "example" in media:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, Mapping):
        for value in examples.values():
            if isinstance(value, Mapping) and "value" in value:
                return value["value"]
    return None


def _first(examples: object) -> Any:
    return examples[0] if isinstance(examples, list) and examples else None


def _is_envelope(schema: object) -> bool:
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return isinstance(properties, Mapping) and properties.keys() >= _ENVELOPE


def _with_defs(document: Mapping[str, Any], schema: Any, where: str) -> Any:
    """Return a copy of ``schema`` whose references into components/schemas are its $defs."""
    defs: dict[str, Any] = {}
    todo: list[str] = []

    def rewrite(node: Any) -> Any:
        if isinstance(node, Mapping):
            out = {key: rewrite(value) for key, value in node.items()}
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMAS):
                name = ref[len(_SCHEMAS) :]
                out["$ref"] = "#/$defs/" + name
                if name not in defs:
                    defs[name] = None
                    todo.append(name)
            return out
        if isinstance(node, list):
            return [rewrite(value) for value in node]
        return copy.deepcopy(node)

    root = rewrite(schema)
    while todo:
        name = todo.pop()
        defs[name] = rewrite(_pointer(document, _SCHEMAS + name, where))
    if defs and isinstance(root, dict):
        root["$defs"] = {**root.get("$defs", {}), **defs}
    return root
