"""producers.schemas: schemas checked against their metaschema, payloads against schemas."""

from __future__ import annotations

import pytest

from producers.errors import InvalidPayload, InvalidSchema, PayloadMismatch
from producers.schemas import (
    MAX_DEPTH,
    Unresolvable,
    check_schema,
    compile_schema,
    first_error,
    mismatch,
    validate,
)

INVOICE = {
    "type": "object",
    "required": ["amount"],
    "properties": {
        "amount": {"type": "number"},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
        "odd key": {"type": "string"},
    },
    "$defs": {"line": {"type": "object", "properties": {"qty": {"type": "integer"}}}},
}


def test_a_payload_error_names_its_path_and_reason() -> None:
    assert first_error(INVOICE, {"amount": 1, "lines": [{"qty": 2}]}) is None
    assert first_error(INVOICE, {"amount": "x"}) == 'data.amount: "x" is not of type "number"'
    assert first_error(INVOICE, {"amount": 1, "lines": [{}, {"qty": "2"}]}) == (
        'data.lines[1].qty: "2" is not of type "integer"'
    )
    assert first_error(INVOICE, {"amount": 1, "odd key": 3}) == (
        'data["odd key"]: 3 is not of type "string"'
    )
    assert first_error(INVOICE, {}) == 'data: "amount" is a required property'


def test_validate_raises_a_typed_payload_error() -> None:
    with pytest.raises(PayloadMismatch) as caught:
        validate(INVOICE, {"amount": None}, root="example")
    assert isinstance(caught.value, InvalidPayload)
    assert caught.value.path == "example.amount"
    assert str(caught.value) == 'example.amount: null is not of type "number"'


def test_the_compiled_validator_is_cached_per_schema_text() -> None:
    same = {"required": ["amount"], "type": "object", "properties": INVOICE["properties"]}
    same["$defs"] = INVOICE["$defs"]
    assert compile_schema(INVOICE) is compile_schema(same)
    assert compile_schema(INVOICE) is not compile_schema({"type": "object"})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "nope"}, "schema is not valid JSON Schema: schema.type: "),
        ({"properties": {"a": {"minimum": "x"}}}, 'schema.properties.a.minimum: "x" is not'),
        ([1], "schema must be a JSON object or boolean, got list"),
        ({"$schema": "https://example.com/mine"}, "unknown $schema 'https://example.com/mine'"),
        ({"$ref": "https://example.com/s.json"}, "only local references"),
        ({"items": {"$ref": "other.json#/a"}}, "at schema.items: only local references"),
        ({"$dynamicRef": "http://169.254.169.254/x"}, "only local references"),
    ],
)
def test_an_invalid_schema_is_refused_with_where(schema: object, message: str) -> None:
    with pytest.raises(InvalidSchema) as caught:
        check_schema(schema)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_draft_is_2020_12_unless_schema_names_another() -> None:
    assert type(compile_schema({"prefixItems": [{"type": "string"}]})).__name__ == (
        "Draft202012Validator"
    )
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}
    assert type(compile_schema(draft7)).__name__ == "Draft7Validator"
    # Draft 4's `exclusiveMinimum` is a boolean; 2020-12 refuses that.
    draft4 = "http://json-schema.org/draft-04/schema#"
    check_schema({"$schema": draft4, "minimum": 0, "exclusiveMinimum": True})
    with pytest.raises(InvalidSchema):
        check_schema({"minimum": 0, "exclusiveMinimum": True})


def test_nesting_is_bounded() -> None:
    deep: dict[str, object] = {"type": "object"}
    for _ in range(MAX_DEPTH):
        deep = {"properties": {"a": deep}}
    with pytest.raises(InvalidSchema, match="nests deeper than"):
        check_schema(deep)


def test_a_local_ref_that_does_not_resolve_is_an_error_not_a_fetch() -> None:
    line = first_error({"$ref": "#/$defs/missing"}, {})
    assert line is not None and line.startswith("data: schema reference cannot be resolved")


def test_a_validator_kept_by_the_caller_gives_the_same_line() -> None:
    validator = compile_schema(INVOICE)
    assert str(mismatch(validator, {"amount": "x"})) == first_error(INVOICE, {"amount": "x"})
    assert mismatch(validator, {"amount": 1}, root="payload") is None


def test_the_shallowest_error_is_the_one_reported() -> None:
    line = first_error(INVOICE, {"lines": [{"qty": "x"}], "odd key": 1})
    assert line == 'data: "amount" is a required property'


def test_a_pattern_the_validator_cannot_run_is_refused_when_checked() -> None:
    with pytest.raises(InvalidSchema, match=r"schema\.properties\.a\.pattern: "):
        check_schema({"properties": {"a": {"pattern": "("}}})


def test_only_the_drafts_the_validator_knows_are_accepted() -> None:
    for known in (
        "http://json-schema.org/draft-06/schema",
        "https://json-schema.org/draft/2019-09/schema#",
    ):
        check_schema({"$schema": known})
    with pytest.raises(InvalidSchema, match="unknown"):
        check_schema({"$schema": "http://json-schema.org/draft-03/schema#"})


def test_a_dangling_local_ref_is_checked_but_fails_every_payload() -> None:
    schema = {"properties": {"a": {"$ref": "#/$defs/nope"}}}
    assert check_schema(schema) is schema
    assert isinstance(compile_schema(schema), Unresolvable)
    line = first_error(schema, {})
    assert line is not None and "/$defs/nope" in line
