"""The endpoint filter language: parse a filter, evaluate it, compile it to SQL/JSON path.

A filter is a JSON object over an event seen as ``{"type": ..., "tenant": ..., "data":
payload}``. Each key is a field (``type``, ``tenant``, ``data`` or a dot path under it:
``data.items.0.sku``, a number segment indexing an array) or a combinator (``$and`` / ``$or``
with a non-empty array of filters, ``$not`` with a filter); the keys of one object are ANDed.
A field's value is a JSON scalar (``$eq``) or an object of operators, ANDed: ``$eq $neq $gt
$gte $lt $lte $in $nin $startsWith $endsWith $exist``. ``$regex`` is refused: a pattern is a
way to stall the relay, and ``$startsWith``/``$endsWith`` cover the common needs.

Values are looked up the way SQL/JSON path's lax mode does, because the relay evaluates the
compiled form (`worker.policy.jsonpath`) inside its fan-out statement and the two must agree
(a property test holds them to it):

- a key on an array looks into each of its elements (``data.items.sku``: every item's sku);
  a number segment on a value that is not an array reads index 0 as the value itself;
- a condition holds when any value found (an array's elements, and theirs, two levels down)
  satisfies it: an array field matches when it contains the value;
- types never mix: numbers compare with numbers (exactly, as decimals), strings with strings
  (by code point), ``true``/``false``/``null`` only equal themselves;
- a missing field satisfies nothing but ``$exist: false``, ``$neq`` and ``$nin`` (which are
  ``$not`` of ``$eq`` and ``$in``); a field present with ``null`` exists and equals ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from worker.errors import InvalidEndpoint

__all__ = [
    "COMPARISONS",
    "MAX_BYTES",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "All",
    "AnyOf",
    "Condition",
    "Filter",
    "InvalidFilter",
    "Not",
    "evaluate",
    "has_nul",
    "parse",
    "parse_text",
]

#: Bytes of a filter's compact JSON text, at most.
MAX_BYTES = 8192
#: Nesting of ``$and``/``$or``/``$not``, at most.
MAX_DEPTH = 8
#: Conditions (operators on fields, ``$in`` items counted one each), at most.
MAX_CONDITIONS = 64
#: Segments of a field path after its root, at most.
MAX_SEGMENTS = 16
#: Digits of an array index, at most.
_MAX_INDEX_DIGITS = 6

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
_OPERATORS = ("$eq", "$neq", *COMPARISONS, "$in", "$nin", "$startsWith", "$endsWith", "$exist")
_ROOTS = ("type", "tenant", "data")


class InvalidFilter(InvalidEndpoint):
    """Reject a filter; the message starts with the path of the offending part."""


@dataclass(frozen=True)
class Condition:
    """One operator on one field: ``path`` as written, ``steps`` the lookups after the root."""

    path: str
    root: str
    steps: tuple[str | int, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Condition | All | AnyOf | Not


@dataclass(frozen=True)
class Filter:
    """A parsed filter: its tree and the JSON object it came from (what is stored and shown)."""

    node: Node
    source: dict[str, Any]


def parse_text(text: str) -> Filter:
    """Parse a filter from JSON text (`parse`); text that is not JSON is refused too."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise InvalidFilter(f"filter: not valid JSON ({exc})") from None
    return parse(obj)


def parse(obj: object) -> Filter:
    """Check a filter object and return its tree, else raise InvalidFilter naming the path."""
    if not isinstance(obj, dict):
        raise InvalidFilter(f"filter: expected a JSON object, got {_kind(obj)}")
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError) as exc:
        raise InvalidFilter(f"filter: not JSON ({exc})") from None
    if has_nul(obj):
        raise InvalidFilter("filter: contains the character U+0000, which Postgres cannot store")
    if size > MAX_BYTES:
        raise InvalidFilter(f"filter: {size} bytes, over the limit of {MAX_BYTES}")
    counter = [0]
    return Filter(_filter(obj, "filter", 0, counter), obj)


def has_nul(value: object) -> bool:
    """Tell whether a JSON value holds the NUL character in a string or key (jsonb cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(has_nul(v) for v in value)


def _filter(obj: object, where: str, depth: int, counter: list[int]) -> Node:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, dict):
        raise InvalidFilter(f"{where}: expected a JSON object, got {_kind(obj)}")
    if not obj:
        raise InvalidFilter(f"{where}: expected at least one condition, got {{}}")
    parts: list[Node] = []
    for key, value in obj.items():
        at = f"{where}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidFilter(f"{at}: expected a non-empty array of filters")
            nodes = tuple(_filter(v, f"{at}.{i}", depth + 1, counter) for i, v in enumerate(value))
            parts.append(All(nodes) if key == "$and" else AnyOf(nodes))
        elif key == "$not":
            parts.append(Not(_filter(value, at, depth + 1, counter)))
        elif key.startswith("$"):
            raise InvalidFilter(f"{at}: {_unknown(key)}; here only $and, $or, $not or a field")
        else:
            parts.extend(_field(key, value, at, counter))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _field(path: str, value: object, where: str, counter: list[int]) -> list[Condition]:
    root, *rest = path.split(".")
    if root not in _ROOTS:
        raise InvalidFilter(f"{where}: unknown field (type, tenant, data or data.<path>)")
    if rest and root != "data":
        raise InvalidFilter(f"{where}: {root} is a string and has no fields")
    if len(rest) > MAX_SEGMENTS:
        raise InvalidFilter(f"{where}: more than {MAX_SEGMENTS} segments")
    steps: list[str | int] = []
    for segment in rest:
        if not segment:
            raise InvalidFilter(f"{where}: empty segment in the path")
        if segment.isascii() and segment.isdigit():
            if len(segment) > _MAX_INDEX_DIGITS:
                raise InvalidFilter(f"{where}: index {segment} has over {_MAX_INDEX_DIGITS} digits")
            steps.append(int(segment))
        else:
            steps.append(segment)
    if not isinstance(value, dict):
        ops: dict[str, Any] = {"$eq": value}
    elif not value:
        raise InvalidFilter(f"{where}: expected a value or operators, got {{}}")
    else:
        ops = value
    out = []
    for op, operand in ops.items():
        at = where if op == "$eq" and ops is not value else f"{where}.{op}"
        if op not in _OPERATORS:
            if not op.startswith("$"):
                raise InvalidFilter(
                    f"{at}: not an operator (a nested field is a dot path: data.a.b)"
                )
            raise InvalidFilter(f"{at}: {_unknown(op)}")
        _check_operand(op, operand, at)
        counter[0] += len(operand) if op in ("$in", "$nin") else 1
        if counter[0] > MAX_CONDITIONS:
            raise InvalidFilter(f"{at}: more than {MAX_CONDITIONS} conditions")
        out.append(Condition(path, root, tuple(steps), op, operand))
    return out


def _check_operand(op: str, operand: object, where: str) -> None:
    if op in ("$eq", "$neq"):
        _scalar(operand, where)
    elif op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:
            raise InvalidFilter(f"{where}: expected a non-empty array, got {_shown(operand)}")
        for i, item in enumerate(operand):
            _scalar(item, f"{where}.{i}")
    elif op in COMPARISONS:
        if not (_is_number(operand) or isinstance(operand, str)):
            raise InvalidFilter(f"{where}: expected a number or a string, got {_shown(operand)}")
    elif op in ("$startsWith", "$endsWith"):
        if not isinstance(operand, str):
            raise InvalidFilter(f"{where}: expected a string, got {_shown(operand)}")
    elif not isinstance(operand, bool):  # $exist
        raise InvalidFilter(f"{where}: expected true or false, got {_shown(operand)}")


def _scalar(operand: object, where: str) -> None:
    if isinstance(operand, dict | list):
        raise InvalidFilter(
            f"{where}: expected a string, number, true, false or null, got {_kind(operand)}"
        )


def _unknown(op: str) -> str:
    if op == "$regex":
        return "$regex is not supported (use $startsWith or $endsWith)"
    return f"unknown operator {op} (one of {', '.join(_OPERATORS)})"


# --- evaluation --------------------------------------------------------------------------


def evaluate(flt: Filter, event_type: str, tenant: str, data: object) -> tuple[bool, str | None]:
    """Tell whether an event passes ``flt``; when it does not, say which condition failed."""
    doc = {"type": event_type, "tenant": tenant, "data": data}
    return _eval(flt.node, doc)


def _eval(node: Node, doc: Mapping[str, Any]) -> tuple[bool, str | None]:
    if isinstance(node, Condition):
        return _condition(node, doc)
    if isinstance(node, All):
        for part in node.parts:
            ok, why = _eval(part, doc)
            if not ok:
                return False, why
        return True, None
    if isinstance(node, AnyOf):
        reasons = []
        for part in node.parts:
            ok, why = _eval(part, doc)
            if ok:
                return True, None
            reasons.append(why)
        return False, "none of $or held: " + "; ".join(r or "" for r in reasons)
    ok, _ = _eval(node.part, doc)
    return (False, f"$not: {_describe(node.part)} held") if ok else (True, None)


def _condition(c: Condition, doc: Mapping[str, Any]) -> tuple[bool, str | None]:
    found = _lookup(doc[c.root], c.steps)
    if c.op == "$exist":
        ok = bool(found) == c.value
    elif c.op in ("$neq", "$nin"):
        ok = not _holds("$eq" if c.op == "$neq" else "$in", c.value, found)
    else:
        ok = _holds(c.op, c.value, found)
    if ok:
        return True, None
    if not found:
        return False, f"{c.path}: missing, so {c.op} {_shown(c.value)} does not hold"
    shown = ", ".join(_shown(v) for v in found[:3]) + (", ..." if len(found) > 3 else "")
    return False, f"{c.path}: {shown} does not satisfy {c.op} {_shown(c.value)}"


def _lookup(value: object, steps: tuple[str | int, ...]) -> list[Any]:
    """Return the values a path reaches, as lax SQL/JSON path does (module docstring)."""
    values = [value]
    for step in steps:
        out: list[Any] = []
        for v in values:
            if isinstance(step, int):
                if isinstance(v, list):
                    out.extend(v[step : step + 1])
                elif step == 0:
                    out.append(v)
            elif isinstance(v, dict):
                if step in v:
                    out.append(v[step])
            elif isinstance(v, list):
                out.extend(e[step] for e in v if isinstance(e, dict) and step in e)
        values = out
    return values


def _holds(op: str, operand: Any, found: list[Any]) -> bool:
    candidates = _unwrap(_unwrap(found))
    if op == "$eq":
        return any(_equal(c, operand) for c in candidates)
    if op == "$in":
        return any(_equal(c, x) for c in candidates for x in operand)
    if op in ("$startsWith", "$endsWith"):
        test = str.startswith if op == "$startsWith" else str.endswith
        return any(isinstance(c, str) and test(c, operand) for c in candidates)
    return any(_compare(op, c, operand) for c in candidates)


def _unwrap(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        out.extend(v) if isinstance(v, list) else out.append(v)
    return out


def _equal(a: object, b: object) -> bool:
    if _is_number(a) and _is_number(b):
        return _decimal(a) == _decimal(b)
    if isinstance(a, bool | str) or a is None:
        return type(a) is type(b) and a == b
    return False


def _compare(op: str, a: object, b: object) -> bool:
    if _is_number(a) and _is_number(b):
        x, y = _decimal(a), _decimal(b)
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b  # type: ignore[assignment]
    else:
        return False
    if op == "$gt":
        return x > y
    if op == "$gte":
        return x >= y
    if op == "$lt":
        return x < y
    return x <= y


def _is_number(v: object) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def _decimal(v: Any) -> Decimal:
    # A float is the decimal its JSON text (repr) says, as Postgres reads that text.
    return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)


def _kind(v: object) -> str:
    if isinstance(v, dict):
        return "an object"
    return "an array" if isinstance(v, list) else _shown(v)


def _shown(v: object) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False, default=_number)
    except ValueError:
        text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(v: object) -> object:
    # A Decimal (a payload read with parse_float=Decimal) is shown as a number.
    return float(v) if isinstance(v, Decimal) else str(v)


def _describe(node: Node) -> str:
    if isinstance(node, Condition):
        return f"{node.path} {node.op} {_shown(node.value)}"
    return "the inner filter"
