"""Compile a filter (`worker.policy.filters`) to the SQL/JSON path the relay evaluates.

`compile_path` turns each condition into ``exists(PATH ? (@ OP $v))`` (``!(...)`` for
``$neq``/``$nin``/``$exist: false``) over ``{"type", "tenant", "data"}`` in lax mode, whose
lookups and array unwrapping are the ones `filters.evaluate` follows; a type mismatch is
"unknown" inside ``?`` and so filters the value out, as `evaluate` never matches across types.
"""

from __future__ import annotations

import re
from typing import Any

from worker.policy.filters import All, AnyOf, Filter, Node, Not

__all__ = ["compile_path"]


def compile_path(flt: Filter) -> tuple[str, dict[str, Any]]:
    """Return the SQL/JSON path predicate of ``flt`` and the variables it reads.

    ``jsonb_path_match(jsonb_build_object('type', t, 'tenant', tn, 'data', payload), path,
    variables)`` is `evaluate`'s answer. Operands travel as variables (``$v0``...), never as
    path text, except an ``$endsWith`` suffix, written as an escaped literal regex.
    """
    variables: dict[str, Any] = {}
    return _compile(flt.node, variables), variables


def _compile(node: Node, variables: dict[str, Any]) -> str:
    if isinstance(node, All):
        return " && ".join(f"({_compile(p, variables)})" for p in node.parts)
    if isinstance(node, AnyOf):
        return " || ".join(f"({_compile(p, variables)})" for p in node.parts)
    if isinstance(node, Not):
        return f"!({_compile(node.part, variables)})"
    path = (
        "$"
        + _key(node.root)
        + "".join(f"[{s}]" if isinstance(s, int) else _key(s) for s in node.steps)
    )
    if node.op == "$exist":
        return f"exists({path})" if node.value else f"!(exists({path}))"

    def var(value: Any) -> str:
        name = f"v{len(variables)}"
        variables[name] = value
        return "$" + name

    op = {"$neq": "$eq", "$nin": "$in"}.get(node.op, node.op)
    if op == "$eq":
        test = f"@ == {var(node.value)}"
    elif op == "$in":
        test = " || ".join(f"@ == {var(v)}" for v in node.value)
    elif op == "$startsWith":
        test = f"@ starts with {var(node.value)}"
    elif op == "$endsWith":
        test = f"@ like_regex {_string(_literal_regex(node.value) + '$')}"
    else:
        sign = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
        test = f"@ {sign} {var(node.value)}"
    found = f"exists({path} ? ({test}))"
    return f"!({found})" if op != node.op else found


def _key(name: str) -> str:
    return "." + _string(name)


def _string(text: str) -> str:
    """Write ``text`` as a SQL/JSON path string literal."""
    return '"' + re.sub(r'["\\\x00-\x1f\x7f]', lambda m: f"\\u{ord(m[0]):04x}", text) + '"'


def _literal_regex(text: str) -> str:
    # In a Postgres advanced regex a backslash before a non-alphanumeric character makes it
    # literal (before a letter or digit it would be an escape like \d, so those stay bare).
    return "".join(f"\\{ch}" if ch.isascii() and not ch.isalnum() else ch for ch in text)
