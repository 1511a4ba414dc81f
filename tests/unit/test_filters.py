"""The filter language (worker.policy.filters): every operator and edge, as a table."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from worker.errors import InvalidEndpoint
from worker.policy.filters import (
    MAX_BYTES,
    MAX_CONDITIONS,
    MAX_DEPTH,
    InvalidFilter,
    evaluate,
    parse,
    parse_text,
)
from worker.policy.jsonpath import compile_path

DATA: dict[str, Any] = {
    "amount": 120,
    "price": 9.5,
    "currency": "EUR",
    "note": None,
    "flag": True,
    "tags": ["vip", "eu", 3],
    "nested": [[1, 2], [3]],
    "deep": [[[7]]],
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 5}],
    "customer": {"name": "Zoë", "address": {"city": "Köln"}},
    "empty": [],
    "numstr": "120",
    "big": 12345678901234567890,
    "codes": {"0": "zero"},
}


def holds(flt: dict[str, Any], data: object = DATA, event_type: str = "order.paid") -> bool:
    return evaluate(parse(flt), event_type, "acme", data)[0]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        # a bare value is $eq; type and tenant are fields too
        ({"type": "order.paid"}, True),
        ({"type": "order.refunded"}, False),
        ({"tenant": "acme"}, True),
        ({"tenant": {"$in": ["other", "acme"]}}, True),
        ({"type": {"$startsWith": "order."}}, True),
        ({"type": {"$endsWith": ".paid"}}, True),
        ({"type": {"$endsWith": "xpaid"}}, False),
        # $eq / $neq: types never mix
        ({"data.amount": 120}, True),
        ({"data.amount": 120.0}, True),
        ({"data.amount": "120"}, False),
        ({"data.numstr": 120}, False),
        ({"data.flag": True}, True),
        ({"data.flag": 1}, False),
        ({"data.amount": {"$eq": True}}, False),
        ({"data.amount": {"$neq": 121}}, True),
        ({"data.amount": {"$neq": 120}}, False),
        ({"data.big": 12345678901234567890}, True),
        ({"data.big": {"$gt": 12345678901234567889}}, True),
        # null: a present null equals null and exists; a missing field is not null
        ({"data.note": None}, True),
        ({"data.note": {"$exist": True}}, True),
        ({"data.missing": None}, False),
        ({"data.missing": {"$neq": None}}, True),
        ({"data.note": {"$neq": None}}, False),
        ({"data.amount": {"$neq": None}}, True),
        # comparisons: numbers with numbers, strings with strings (by code point)
        ({"data.amount": {"$gt": 100, "$lte": 120}}, True),
        ({"data.amount": {"$gt": 120}}, False),
        ({"data.amount": {"$gte": 120}}, True),
        ({"data.amount": {"$lt": 120.5}}, True),
        ({"data.price": {"$lt": 9.5}}, False),
        ({"data.price": {"$lte": 9.5}}, True),
        ({"data.amount": {"$gt": "1"}}, False),
        ({"data.numstr": {"$gt": 1}}, False),
        ({"data.currency": {"$gt": "DZZ", "$lt": "EUS"}}, True),
        ({"data.currency": {"$gt": "eur"}}, False),
        ({"data.customer.name": {"$gt": "Zoz"}}, True),
        ({"data.flag": {"$gt": 0}}, False),
        ({"data.note": {"$lt": 1}}, False),
        # $in / $nin
        ({"data.currency": {"$in": ["USD", "EUR"]}}, True),
        ({"data.currency": {"$in": ["USD", 1, None]}}, False),
        ({"data.currency": {"$nin": ["USD", "GBP"]}}, True),
        ({"data.currency": {"$nin": ["EUR"]}}, False),
        ({"data.missing": {"$nin": ["EUR"]}}, True),
        ({"data.missing": {"$in": ["EUR"]}}, False),
        ({"data.note": {"$in": [None]}}, True),
        # $startsWith / $endsWith on strings only; unicode and regex characters are literal
        ({"data.customer.address.city": {"$startsWith": "Kö"}}, True),
        ({"data.customer.address.city": {"$endsWith": "öln"}}, True),
        ({"data.customer.address.city": {"$endsWith": "Oln"}}, False),
        ({"data.amount": {"$startsWith": "1"}}, False),
        ({"data.currency": {"$startsWith": ""}}, True),
        ({"data.currency": {"$endsWith": ".*"}}, False),
        # $exist
        ({"data.missing": {"$exist": False}}, True),
        ({"data.missing": {"$exist": True}}, False),
        ({"data.empty": {"$exist": True}}, True),
        ({"data.customer.address": {"$exist": True}}, True),
        ({"data.customer.address.zip": {"$exist": False}}, True),
        # a missing field satisfies nothing else
        ({"data.missing": {"$gt": 0}}, False),
        ({"data.missing": {"$startsWith": ""}}, False),
        ({"data.missing": 1}, False),
        # arrays contain: elements, and their elements (two levels, as SQL/JSON lax mode)
        ({"data.tags": "vip"}, True),
        ({"data.tags": 3}, True),
        ({"data.tags": "us"}, False),
        ({"data.tags": {"$neq": "vip"}}, False),
        ({"data.tags": {"$nin": ["us", "ca"]}}, True),
        ({"data.tags": {"$startsWith": "e"}}, True),
        ({"data.nested": 3}, True),
        ({"data.deep": 7}, False),
        ({"data.empty": {"$in": [1]}}, False),
        # indexes, and keys looked up in every element of an array
        ({"data.items.0.sku": "A1"}, True),
        ({"data.items.1.sku": "A1"}, False),
        ({"data.items.5.sku": {"$exist": False}}, True),
        ({"data.items.sku": "B2"}, True),
        ({"data.items.qty": {"$gt": 4}}, True),
        ({"data.tags.0": "vip"}, True),
        ({"data.nested.1": 3}, True),
        ({"data.amount.0": 120}, True),
        ({"data.amount.1": {"$exist": True}}, False),
        ({"data.codes.0": "zero"}, False),
        ({"data.currency.code": {"$exist": False}}, True),
        # several conditions in one object are ANDed; $and, $or, $not combine
        ({"type": "order.paid", "data.amount": {"$gt": 500}}, False),
        ({"$or": [{"data.amount": {"$gt": 500}}, {"data.currency": "EUR"}]}, True),
        ({"$or": [{"data.amount": {"$gt": 500}}, {"data.currency": "USD"}]}, False),
        ({"$and": [{"data.amount": {"$gt": 5}}, {"data.currency": "EUR"}]}, True),
        ({"$not": {"data.currency": "EUR"}}, False),
        ({"$not": {"data.missing": 1}}, True),
        ({"$not": {"$or": [{"tenant": "x"}, {"type": "y"}]}}, True),
        # the whole payload
        ({"data": {"$exist": True}}, True),
        ({"data": 5}, False),
    ],
)
def test_a_filter_decides_by_the_documented_rules(flt: dict[str, Any], expected: bool) -> None:
    assert holds(flt) is expected


def test_a_payload_that_is_not_an_object_is_looked_up_all_the_same() -> None:
    assert holds({"data": 5}, data=5)
    assert holds({"data": "x"}, data=["x", "y"])
    assert holds({"data.a": {"$exist": False}}, data=[1])


def test_numbers_compare_as_the_decimals_they_are_written_as() -> None:
    assert holds({"data.x": 0.1}, data={"x": Decimal("0.1")})
    assert not holds({"data.x": {"$gt": 0.1}}, data={"x": Decimal("0.1")})
    assert holds({"data.x": 10000000000000000}, data={"x": 1e16})


def test_the_reason_names_the_condition_that_failed() -> None:
    flt = parse({"type": "order.paid", "data.amount": {"$gt": 500}})
    ok, why = evaluate(flt, "order.paid", "acme", DATA)
    assert not ok and why == "data.amount: 120 does not satisfy $gt 500"
    _, why = evaluate(parse({"data.missing": 1}), "t", "acme", DATA)
    assert why == "data.missing: missing, so $eq 1 does not hold"
    _, why = evaluate(parse({"$not": {"tenant": "acme"}}), "t", "acme", DATA)
    assert why == '$not: tenant $eq "acme" held'
    assert evaluate(flt, "order.paid", "acme", {"amount": 501}) == (True, None)


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (
            {"data.amount": {"$gt": "x", "$lt": True}},
            "filter.data.amount.$lt: expected a number or a string, got true",
        ),
        (
            {"data.amount": {"$gt": None}},
            "filter.data.amount.$gt: expected a number or a string, got null",
        ),
        ({"data.x": {"$regex": "^(a+)+$"}}, "filter.data.x.$regex: $regex is not supported"),
        ({"data.x": {"$like": "a"}}, "filter.data.x.$like: unknown operator $like"),
        ({"data.x": {"name": "a"}}, "filter.data.x.name: not an operator"),
        ({"price": 1}, "filter.price: unknown field"),
        ({"type.x": 1}, "filter.type.x: type is a string and has no fields"),
        ({"data..x": 1}, "filter.data..x: empty segment"),
        ({"$nor": []}, "filter.$nor: unknown operator $nor"),
        ({"$or": []}, "filter.$or: expected a non-empty array of filters"),
        ({"$or": [{"type": "a"}, 3]}, "filter.$or.1: expected a JSON object, got 3"),
        ({"$not": {}}, "filter.$not: expected at least one condition"),
        ({}, "filter: expected at least one condition"),
        (
            {"data.x": [1, 2]},
            "filter.data.x: expected a string, number, true, false or null, got an array",
        ),
        ({"data.x": {"$in": []}}, "filter.data.x.$in: expected a non-empty array"),
        ({"data.x": {"$in": [{"a": 1}]}}, "filter.data.x.$in.0: expected a string, number"),
        ({"data.x": {"$startsWith": 1}}, "filter.data.x.$startsWith: expected a string, got 1"),
        ({"data.x": {"$exist": "yes"}}, 'filter.data.x.$exist: expected true or false, got "yes"'),
        ({"data.x": {}}, "filter.data.x: expected a value or operators"),
        ({"data.x": "a\x00"}, "filter: contains the character U+0000"),
        ({"data.x": float("nan")}, "filter: not JSON"),
        ({"data.x.1000000": 1}, "filter.data.x.1000000: index 1000000 has over 6 digits"),
    ],
)
def test_a_bad_filter_is_refused_with_the_path_of_what_is_wrong(
    flt: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse(flt)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, InvalidEndpoint)  # exit 2 at the CLI, 422 at the API


def test_text_that_is_not_a_json_object_is_refused() -> None:
    with pytest.raises(InvalidFilter, match=r"^filter: not valid JSON"):
        parse_text("{type: 1}")
    with pytest.raises(InvalidFilter, match=r"^filter: expected a JSON object, got an array"):
        parse_text("[]")


def test_a_filter_cannot_grow_without_bound() -> None:
    deep: dict[str, Any] = {"type": "a"}
    for _ in range(MAX_DEPTH + 1):
        deep = {"$not": deep}
    with pytest.raises(InvalidFilter, match="nested deeper than"):
        parse(deep)
    wide = {f"data.f{i}": i for i in range(MAX_CONDITIONS + 1)}
    with pytest.raises(InvalidFilter, match=f"more than {MAX_CONDITIONS} conditions"):
        parse(wide)
    many = {"data.x": {"$in": list(range(MAX_CONDITIONS + 1))}}
    with pytest.raises(InvalidFilter, match="conditions"):
        parse(many)
    large = {"data.x": "y" * MAX_BYTES}
    with pytest.raises(InvalidFilter, match=f"over the limit of {MAX_BYTES}"):
        parse(large)


def test_operands_reach_the_sql_path_as_variables_never_as_text() -> None:
    path, variables = compile_path(
        parse({'data.a"b': {"$in": ["x') or true --", 2]}, "$not": {"tenant": "t"}})
    )
    assert path == (
        '(exists($."data"."a\\u0022b" ? (@ == $v0 || @ == $v1))) && '
        '(!(exists($."tenant" ? (@ == $v2))))'
    )
    assert variables == {"v0": "x') or true --", "v1": 2, "v2": "t"}


def test_an_ends_with_suffix_is_a_literal_regex() -> None:
    path, variables = compile_path(parse({"data.f": {"$endsWith": 'a.b\\"c*'}}))
    assert variables == {}
    regex = json.loads(path[path.index('like_regex "') + len("like_regex ") : -2])
    assert regex == 'a\\.b\\\\\\"c\\*$'
