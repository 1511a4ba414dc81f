"""The OpenAPI document says what the server accepts, no more and no less.

Each constraint of the document is checked against the server's own check on generated
inputs: a value the document allows is accepted, a value the server refuses is one the
document refuses too. A client (or schemathesis) that follows the document is never
answered 422 for it, and a 405 names every method of its path.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from producers.errors import InvalidEvent
from producers.names import MAX_EVENT_TYPE, MAX_TENANT
from producers.publish import Event, prepare
from worker.api import create_app
from worker.api.models import BIG, RESERVED_HEADER_NAMES, URL_PATTERN, EndpointIn
from worker.api.openapi import document
from worker.api.paging import decode_cursor, encode_cursor
from worker.api.problems import Problem
from worker.errors import InvalidEndpoint
from worker.ops.validation import check_destination, check_tenant, validate_header, validate_url
from worker.settings import Settings, parse_networks

SPEC = document()
SCHEMAS = SPEC["components"]["schemas"]
HEADERS = SCHEMAS["EndpointIn"]["properties"]["headers"]["anyOf"][0]


def string_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return the string branch of a nullable schema."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            return branch
    raise AssertionError(f"no string in {schema}")


def allows(schema: dict[str, Any], value: str) -> bool:
    """Return whether a string schema of the document allows ``value``.

    Patterns are written in the syntax Python, pydantic's engine and ECMA 262 share, but for
    a final ``$``: the end of the text in ECMA 262, also before a final newline in Python.
    """
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
        return False
    if "pattern" in schema and not ecma_search(schema["pattern"], value):
        return False
    return "not" not in schema or not allows(schema["not"], value)


def ecma_search(pattern: str, value: str) -> bool:
    """Return whether ``pattern`` (a JSON Schema pattern) matches ``value``."""
    return re.search(re.sub(r"\$$", r"\\Z", pattern), value) is not None


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Generate strings the schema allows, and some it does not."""
    allowed = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text()
    return st.one_of(allowed.filter(lambda v: allows(schema, v)), st.text(max_size=20))


EVENT_TYPE = string_schema(SCHEMAS["EventIn"]["properties"]["event_type"])
TENANT = string_schema(SCHEMAS["EventIn"]["properties"]["tenant"])


def publishes(event_type: str, tenant: str) -> bool:
    try:
        prepare(Event(event_type, {}, tenant_id=tenant), 1000)
    except InvalidEvent:
        return False
    return True


@given(from_schema(EVENT_TYPE))
@example("a" * MAX_EVENT_TYPE)
@example("a" * (MAX_EVENT_TYPE + 1))
@example("a.b\n")
def test_an_event_type_is_allowed_by_the_document_iff_publish_accepts_it(value: str) -> None:
    assert allows(EVENT_TYPE, value) == publishes(value, "acme")


@given(from_schema(TENANT))
@example("t" * MAX_TENANT)
@example("t" * (MAX_TENANT + 1))
@example("a/b")
def test_a_tenant_is_allowed_by_the_document_iff_publish_and_endpoints_accept_it(
    value: str,
) -> None:
    assert allows(TENANT, value) == publishes("a.b", value)
    try:
        check_tenant(value)
        stored = True
    except InvalidEndpoint:
        stored = False
    assert allows(TENANT, value) == stored


def header_accepted(name: str, value: str) -> bool:
    try:
        validate_header(name, value)
    except InvalidEndpoint:
        return False
    return True


@given(from_schema(HEADERS["propertyNames"]))
@example("Host")
@example("WEBHOOK-ID")
@example("Proxy-Authorization")
@example("X Y")
@example("Authorization")
def test_a_header_name_is_allowed_by_the_document_iff_an_endpoint_accepts_it(name: str) -> None:
    assert allows(HEADERS["propertyNames"], name) == header_accepted(name, "v")


@given(from_schema(HEADERS["additionalProperties"]))
@example("Bearer abc")
@example("a\r\nb")
@example("caf\u00e9")
@example("x" * 4097)
def test_a_header_value_is_allowed_by_the_document_iff_an_endpoint_accepts_it(value: str) -> None:
    assert allows(HEADERS["additionalProperties"], value) == header_accepted("X-Token", value)


def does_not_resolve(host: str, port: int) -> list[Any]:
    raise socket.gaierror("not in this test")


@given(st.from_regex(URL_PATTERN, fullmatch=True).filter(lambda u: len(u) <= 2048))
@example("http://a")
@example("https://hooks.example.com:65535/in?x=1")
def test_every_url_the_document_allows_can_be_registered(url: str) -> None:
    # Host names are resolved when registered: one that does not resolve is a warning, so
    # an endpoint is made. localhost (when loopback is not allowed) is the one name refused.
    assert validate_url(url) == url
    if re.match(r"https?://(?:[^/?:]*\.)?localhost\.?(?:[:/?]|$)", url, re.IGNORECASE):
        return
    check_destination(url, parse_networks(""), resolver=does_not_resolve)


@pytest.mark.parametrize(
    "url",
    ["ftp://a.example/", "http://user@a.example/", "http://a.example/#x", "http://a b/", "0"],
)
def test_urls_the_server_refuses_are_outside_the_document(url: str) -> None:
    assert not ecma_search(URL_PATTERN, url)
    with pytest.raises(InvalidEndpoint):
        validate_url(url)


CURSORS = {
    "/v1/endpoints": (uuid.UUID,),
    "/v1/events": (uuid.UUID,),
    "/v1/deliveries": (int,),
    "/v1/dead-letters": (datetime, int),
}


def cursor_schema(path: str) -> dict[str, Any]:
    (cursor,) = [p for p in SPEC["paths"][path]["get"]["parameters"] if p["name"] == "cursor"]
    schema: dict[str, Any] = cursor["schema"]
    return schema


@pytest.mark.parametrize("path", CURSORS)
@given(data=st.data())
def test_every_cursor_the_document_allows_is_decoded(path: str, data: st.DataObject) -> None:
    schema = cursor_schema(path)
    cursor = data.draw(from_schema(schema))
    if allows(schema, cursor):
        assert decode_cursor(cursor, *CURSORS[path]) is not None
    else:
        with pytest.raises(Problem) as refused:
            decode_cursor(cursor, *CURSORS[path])
        assert refused.value.status == 422


@given(
    st.uuids(),
    st.integers(1, BIG),
    st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)),
)
def test_a_cursor_given_is_the_key_it_was_made_of(
    key: uuid.UUID, number: int, moment: datetime
) -> None:
    by_uuid, by_id, by_time = (
        encode_cursor([str(key)]),
        encode_cursor([number]),
        encode_cursor([moment, number]),
    )
    assert decode_cursor(by_uuid, uuid.UUID) == [str(key)]
    assert decode_cursor(by_id, int) == [number]
    assert decode_cursor(by_time, datetime, int) == [moment, number]
    assert allows(cursor_schema("/v1/events"), by_uuid)
    assert allows(cursor_schema("/v1/deliveries"), by_id)
    assert allows(cursor_schema("/v1/dead-letters"), by_time)


def integer_schemas(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if node.get("type") == "integer" else []
        return found + [s for v in node.values() for s in integer_schemas(v)]
    if isinstance(node, list):
        return [s for v in node for s in integer_schemas(v)]
    return []


def test_integer_bounds_are_integers_and_the_largest_id_is_bigints() -> None:
    bounds = [s[k] for s in integer_schemas(SPEC) for k in ("minimum", "maximum") if k in s]
    assert bounds and all(type(b) is int for b in bounds)
    delivery = SPEC["paths"]["/v1/deliveries/{delivery_id}"]["get"]["parameters"][0]
    assert delivery["schema"]["maximum"] == BIG == 2**63 - 1
    assert SCHEMAS["ReplayIn"]["properties"]["ids"]["items"]["maximum"] == BIG


def test_reserved_header_names_are_refused_in_any_case() -> None:
    for name in ("host", "HOST", "Te", "webhook-signature", "Proxy-Anything"):
        assert ecma_search(RESERVED_HEADER_NAMES, name), name
    assert not ecma_search(RESERVED_HEADER_NAMES, "X-Host")


def test_a_405_names_every_method_its_path_serves() -> None:
    client = TestClient(create_app(Settings()))
    for path, operations in SPEC["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        served = [m.upper() for m in operations]
        for method in ("OPTIONS", "PUT", "PATCH", "DELETE", "POST", "GET"):
            if method in served:
                continue
            answer = client.request(method, concrete)
            assert answer.status_code == 405, (method, path)
            allow = {m.strip() for m in answer.headers["allow"].split(",")}
            assert allow - {"HEAD"} == set(served), (method, path, allow)
            assert answer.headers["content-type"] == "application/problem+json"


def test_the_document_uses_only_json_schema_keywords_for_bounds() -> None:
    # pydantic writes `ge`/`le` (not JSON Schema) when a validator comes before the bounds.
    text = json.dumps(SPEC)
    assert '"ge":' not in text and '"le":' not in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/h", "https://[::1]:8443/x?y", "http://8.8/"])
def test_an_ip_address_url_is_left_to_the_destination_check(url: str) -> None:
    # Outside the pattern (which cannot say which addresses are allowed), not refused by it.
    assert not ecma_search(URL_PATTERN, url)
    assert EndpointIn(url=url).url == url


@pytest.mark.parametrize("url", ["http://A*", "http://a.1/", "http://a.example/#f", "http://a\n"])
def test_a_url_outside_the_pattern_is_refused_by_the_model(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        EndpointIn(url=url)
