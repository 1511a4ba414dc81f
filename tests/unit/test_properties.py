"""Properties of the pure edges, checked on generated inputs (hypothesis; no services).

What every input must get: an accepted event round-trips its JSON and a refused one raises
a PublishError; a URL or header is accepted only if it can be sent; durations, schedules
and settings parse or fail naming the variable; the SSRF guard refuses every non-public
address however it is spelled or embedded; and the command line turns bad arguments into
exit status 2 without a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import string
from collections.abc import Sequence
from typing import Any, Literal

import pytest
import yarl
from click.testing import CliRunner
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from producers.errors import InvalidEvent, InvalidPayload, PayloadTooLarge, PublishError
from producers.publish import MAX_IDEMPOTENCY_KEY, Event, prepare
from worker import cli
from worker.delivery.dns import resolve
from worker.errors import BlockedDestination, ConfigError, InvalidEndpoint
from worker.ops.endpoints import RESERVED_HEADERS, parse_header, validate_header, validate_url
from worker.policy.guard import check_address, parse_ip_literal
from worker.settings import IPNetwork, Settings, parse_duration, parse_schedule

# -- producers.publish.prepare ------------------------------------------------------------

EVENT_TYPES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}", fullmatch=True)
TENANTS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", fullmatch=True)
NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
#: Text Postgres can store: no NUL, no lone surrogate (neither is valid UTF-8 text).
STORABLE_TEXT = st.text(st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00"))
KEYS = st.text(
    st.characters(exclude_categories=NO_SURROGATES, exclude_characters="\x00"),
    min_size=1,
    max_size=MAX_IDEMPOTENCY_KEY,
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | STORABLE_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(STORABLE_TEXT, inner, max_size=5),
    max_leaves=25,
)
BIG = 10**9


@given(EVENT_TYPES, TENANTS, st.none() | KEYS, JSON_VALUES)
def test_an_accepted_event_round_trips_its_json(
    event_type: str, tenant: str, key: str | None, payload: Any
) -> None:
    got_tenant, got_type, body, got_key, _ = prepare(Event(event_type, payload, tenant, key), BIG)
    assert (got_tenant, got_type, got_key) == (tenant, event_type, key)
    assert json.loads(body) == payload
    body.encode()  # storable: valid UTF-8


@pytest.mark.parametrize(
    "payload",
    [{"\\u0000": None}, "C:\\u0000", ["\\\\\\u0000"]],
    ids=["key", "value", "three backslashes"],
)
def test_the_text_backslash_u0000_is_not_a_nul_character(payload: Any) -> None:
    # json.dumps writes a backslash as two: the text "\u0000" is storable, a NUL is not.
    assert json.loads(prepare(Event("a.b", payload), BIG)[2]) == payload


@pytest.mark.parametrize("payload", [{"k": "a\x00"}, {"\x00": 1}, ["\\\x00"]])
def test_a_nul_character_is_refused(payload: Any) -> None:
    with pytest.raises(InvalidPayload, match="NUL"):
        prepare(Event("a.b", payload), BIG)


@given(JSON_VALUES, st.integers(min_value=1, max_value=2000))
def test_the_payload_limit_is_exact(payload: Any, limit: int) -> None:
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    try:
        prepare(Event("a.b", payload), limit)
    except PayloadTooLarge as exc:
        assert (exc.size, exc.limit) == (size, limit) and size > limit
    else:
        assert size <= limit


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _circular() -> Any:
    value: list[Any] = []
    value.append(value)
    return value


UNSERIALISABLE = st.sampled_from(
    [
        object(),
        {1, 2},
        b"bytes",
        float("nan"),
        float("inf"),
        {"nul": "a\x00b"},
        {"key\x00": 1},
        "\udcff",  # a lone surrogate, what invalid UTF-8 on a command line decodes to
        {"text": "\ud800 half a pair"},
        {(1, 2): "tuple key"},
    ]
)


@given(
    st.one_of(
        st.tuples(
            st.just("type"),
            st.one_of(
                st.just(""),
                st.text(min_size=1).filter(
                    lambda t: (
                        not (t[:1].isascii() and t[:1].isalnum())
                        or any(not (c.isascii() and (c.isalnum() or c in "_.:/-")) for c in t)
                    )
                ),
                st.text(alphabet=string.ascii_letters, min_size=256, max_size=300),
                st.integers(),
                st.none(),
            ),
        ),
        st.tuples(
            st.just("tenant"),
            st.one_of(
                st.just(""),
                st.text(min_size=1).filter(
                    lambda t: any(not (c.isascii() and (c.isalnum() or c in "_.:-")) for c in t)
                ),
                st.text(alphabet=string.ascii_letters, min_size=129, max_size=150),
                st.integers(),
            ),
        ),
        st.tuples(
            st.just("key"),
            st.one_of(
                st.just(""),
                st.text(min_size=MAX_IDEMPOTENCY_KEY + 1, max_size=300),
                st.text().map(lambda t: t + "\x00"),
                st.just("\udcff"),
                st.integers(),
            ),
        ),
        st.tuples(st.just("payload"), UNSERIALISABLE),
    )
)
def test_a_refused_event_raises_a_publish_error(bad: tuple[str, Any]) -> None:
    field, value = bad
    event = Event(
        value if field == "type" else "a.b",
        value if field == "payload" else {"ok": True},
        value if field == "tenant" else "default",
        value if field == "key" else None,
    )
    with pytest.raises(PublishError) as caught:
        prepare(event, BIG)
    assert isinstance(caught.value, InvalidPayload if field == "payload" else InvalidEvent)


@pytest.mark.parametrize(
    "payload",
    [_nested(100_000), _circular(), "\udcff", {"k": ["\ud800"]}],
    ids=["nested 100k deep", "circular", "lone surrogate", "nested lone surrogate"],
)
def test_a_payload_json_cannot_carry_is_refused_as_invalid(payload: Any) -> None:
    with pytest.raises(InvalidPayload):
        prepare(Event("a.b", payload), BIG)


# -- worker.ops.endpoints -----------------------------------------------------------------------

HOSTS = st.one_of(
    st.from_regex(
        r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}",
        fullmatch=True,
    ),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
PATHS = st.from_regex(
    r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){0,4}(\?[A-Za-z0-9=&]{0,20})?", fullmatch=True
)


@given(
    st.sampled_from(["http", "https"]),
    HOSTS,
    st.none() | st.integers(min_value=1, max_value=65535),
    PATHS,
)
def test_a_well_formed_url_is_accepted_unchanged(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    assert validate_url(url) == url


@given(st.text(max_size=80) | st.from_regex(r"https?://\S{0,40}", fullmatch=True))
@example("http://[::1")
@example("http://a:99999/")
@example("http://a:0/")
@example("http://user@a/")
@example("http://:80/")
@example("javascript:alert(1)")
def test_a_url_is_accepted_only_if_it_can_be_sent(url: str) -> None:
    try:
        validate_url(url)
    except InvalidEndpoint:
        return
    parsed = yarl.URL(url)  # the worker's client can build a request to it
    assert parsed.scheme in ("http", "https") and parsed.raw_host
    assert not any(ch.isspace() for ch in url)
    assert "@" not in url.split("/")[2]  # no credentials in the authority


TOKENS = st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,30}", fullmatch=True)


@given(TOKENS, st.text(max_size=200))
@example("X-Name", "café")
@example("X-Name", "日本")
@example("X-Injected", "a\r\nX-Evil: 1")
def test_an_accepted_header_can_be_sent_and_never_injects_another(name: str, value: str) -> None:
    try:
        got_name, got_value = validate_header(name, value)
    except InvalidEndpoint:
        return
    assert (got_name, got_value) == (name, value)
    lower = name.lower()
    assert not lower.startswith(("webhook-", "proxy-")) and lower not in RESERVED_HEADERS
    assert not any(ch in value for ch in "\r\n\x00")
    # What the worker's HTTP client writes on every delivery: one ASCII header line.
    assert f"{name}: {value}\r\n".encode("ascii").count(b"\r\n") == 1


@given(TOKENS, st.text(alphabet=string.printable, max_size=100))
def test_parse_header_splits_at_the_first_colon(name: str, value: str) -> None:
    assume(not name.lower().startswith(("webhook-", "proxy-")))
    assume(name.lower() not in RESERVED_HEADERS)
    text = f"{name}: {value}"
    try:
        assert parse_header(text) == (name, value.strip())
    except InvalidEndpoint:
        assert any(ch in value for ch in "\r\n\x0b\x0c") or len(value.strip()) > 4096


@given(st.text(max_size=60))
def test_parse_header_never_fails_otherwise(text: str) -> None:
    try:
        name, value = parse_header(text)
    except InvalidEndpoint:
        return
    assert ":" in text and name and "\n" not in value and "\r" not in value


# -- worker.settings ------------------------------------------------------------------------

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PARTS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS))),
    min_size=1,
    max_size=4,
)


@given(PARTS)
def test_a_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(n * UNITS[u] for n, u in parts))
    assert parse_duration(text.upper()) == parse_duration(text)


@given(st.text(max_size=20))
def test_a_duration_is_a_non_negative_number_of_seconds_or_refused(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds >= 0 and seconds == seconds  # not NaN


@given(st.lists(PARTS, min_size=1, max_size=12), st.sampled_from([",", ", ", " ,", ",,"]))
def test_a_schedule_is_its_durations_in_order(
    delays: list[list[tuple[int, str]]], sep: str
) -> None:
    texts = ["".join(f"{n}{u}" for n, u in parts) for parts in delays]
    assert parse_schedule(sep.join(texts)) == tuple(parse_duration(t) for t in texts)


@given(st.integers(min_value=101, max_value=300))
def test_a_schedule_of_more_than_a_hundred_attempts_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        parse_schedule(",".join(["1s"] * n))


VARIABLES = [
    "DATABASE_URL",
    "REDIS_URL",
    "WEBHOOKS_RETRY_SCHEDULE",
    "WEBHOOKS_MAX_DELIVERY_AGE",
    "WEBHOOKS_DISABLE_AFTER",
    "WEBHOOKS_REQUEST_TIMEOUT",
    "WEBHOOKS_MAX_PAYLOAD_BYTES",
    "WEBHOOKS_ALLOWED_NETWORKS",
    "WEBHOOKS_METRICS_PORT",
    "WEBHOOKS_RELAY_METRICS_PORT",
    "WEBHOOKS_LOG_FORMAT",
]


@given(st.dictionaries(st.sampled_from(VARIABLES), st.text(max_size=30), max_size=4))
def test_settings_build_or_name_the_bad_variable(env: dict[str, str]) -> None:
    try:
        built = Settings.from_env(env)
    except ConfigError as exc:
        assert exc.variable in env
        assert str(exc).startswith(exc.variable + ": ") and "\n" not in str(exc)
        return
    assert isinstance(built, Settings)
    assert built.request_timeout > 0 and built.max_payload_bytes > 0
    assert all(d >= 0 for d in built.retry_schedule)


@given(
    st.sampled_from(VARIABLES[2:]),
    st.sampled_from(["soon", "-1", "1.5.3s", "0x10", "ten", "//", "9999999999999"]),
)
def test_one_bad_variable_among_good_ones_is_named(variable: str, bad: str) -> None:
    good = {
        "DATABASE_URL": "postgresql://db/app",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "WEBHOOKS_RETRY_SCHEDULE": "0s,5s",
        "WEBHOOKS_REQUEST_TIMEOUT": "10s",
        "WEBHOOKS_METRICS_PORT": "9300",
    }
    try:
        Settings.from_env({**good, variable: bad})
    except ConfigError as exc:
        assert exc.variable == variable


# -- worker.policy.guard: the SSRF check -----------------------------------------------------------

#: Ranges no webhook may reach, written out here independently of the guard's own table.
NON_PUBLIC_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
METADATA_V4 = ipaddress.IPv4Address("169.254.169.254")
METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")


@st.composite
def non_public_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(NON_PUBLIC_V4))
    return ipaddress.IPv4Address(
        draw(st.integers(int(net.network_address), int(net.broadcast_address)))
    )


PUBLIC_V4 = (
    st.ip_addresses(v=4)
    .filter(
        lambda a: (
            not any(a in n for n in NON_PUBLIC_V4) and a != ipaddress.IPv4Address("192.88.99.1")
        )
    )
    .filter(lambda a: not a.is_private and a.is_global)
)
ANY_V4 = st.ip_addresses(v=4)


def embeddings(v4: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """Return the IPv6 forms that carry `v4`: mapped, compatible, NAT64, 6to4."""
    n = int(v4)
    forms = [
        ipaddress.IPv6Address((0xFFFF << 32) | n),  # ::ffff:a.b.c.d
        ipaddress.IPv6Address((0x64FF9B << 96) | n),  # 64:ff9b::a.b.c.d
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1),  # 2002:AABB:CCDD::1
    ]
    if n > 1:
        forms.append(ipaddress.IPv6Address(n))  # ::a.b.c.d (deprecated "compatible")
    return forms


@given(non_public_v4())
@example(METADATA_V4)
def test_every_non_public_ipv4_address_is_refused(addr: ipaddress.IPv4Address) -> None:
    assert check_address(addr, ()) is not None


@given(PUBLIC_V4)
def test_public_ipv4_addresses_pass(addr: ipaddress.IPv4Address) -> None:
    assert check_address(addr, ()) is None


@given(ANY_V4)
@example(METADATA_V4)
@example(ipaddress.IPv4Address("127.0.0.1"))
@example(ipaddress.IPv4Address("10.0.0.1"))
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(
    addr: ipaddress.IPv4Address,
) -> None:
    refused = check_address(addr, ()) is not None
    for form in embeddings(addr):
        assert (check_address(form, ()) is not None) == refused, form


@given(st.ip_addresses(v=6))
@example(METADATA_V6)
@example(ipaddress.IPv6Address("::1"))
@example(ipaddress.IPv6Address("fe80::1"))
def test_non_global_ipv6_addresses_are_refused(addr: ipaddress.IPv6Address) -> None:
    carries_v4 = (
        addr.ipv4_mapped is not None
        or addr.sixtofour is not None
        or addr.teredo is not None
        or addr in ipaddress.ip_network("64:ff9b::/96")
        or addr in ipaddress.ip_network("::/96")
    )
    assume(not carries_v4)
    if not addr.is_global or addr.is_multicast or addr in ipaddress.ip_network("fc00::/7"):
        assert check_address(addr, ()) is not None


@given(non_public_v4())
def test_allowed_networks_open_exactly_their_range_in_every_form(
    addr: ipaddress.IPv4Address,
) -> None:
    allowed: Sequence[IPNetwork] = (ipaddress.ip_network(f"{addr}/32"),)
    assert check_address(addr, allowed) is None
    for form in embeddings(addr)[:2]:  # mapped and NAT64 name the same host
        assert check_address(form, allowed) is None
    neighbour = ipaddress.IPv4Address(int(addr) ^ 1)
    if any(neighbour in n for n in NON_PUBLIC_V4):
        assert check_address(neighbour, allowed) is not None


@st.composite
def spellings(draw: st.DrawFn, addr: ipaddress.IPv4Address) -> str:
    """Return `addr` written the way inet_aton reads it: 1-4 parts, each dec, oct or hex."""
    n = int(addr)
    parts_count = draw(st.integers(1, 4))
    octets = list(addr.packed)
    leading = octets[: parts_count - 1]
    last = n & ((1 << (8 * (4 - len(leading)))) - 1)
    texts = []
    for value in [*leading, last]:
        base = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        if base == "dec":
            texts.append(str(value))
        elif base == "oct":
            texts.append("0" + format(value, "o"))
        elif base == "hex":
            texts.append("0x" + format(value, "x"))
        else:
            texts.append("0X" + format(value, "X"))
    return ".".join(texts)


def _no_resolver(host: str, port: int) -> Any:
    raise AssertionError(f"a literal address went to the resolver: {host}")


def _check_spelling(spelled: str, addr: ipaddress.IPv4Address) -> None:
    assert parse_ip_literal(spelled) == addr
    assert socket.inet_aton(spelled) == addr.packed  # as libc reads it
    if check_address(addr, ()) is not None:
        with pytest.raises(BlockedDestination):
            resolve(spelled, 443, (), _no_resolver)
    else:
        assert resolve(spelled, 443, (), _no_resolver) == [str(addr)]


@given(st.data(), ANY_V4)
def test_every_spelling_of_an_address_is_that_address(
    data: st.DataObject, addr: ipaddress.IPv4Address
) -> None:
    _check_spelling(data.draw(spellings(addr)), addr)


@pytest.mark.parametrize(
    "spelled",
    [
        "169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "0xa9.0xfe.43518",
        "169.16689662",
        "0XA9.254.0xa9fe",
    ],
)
def test_the_metadata_address_is_refused_however_it_is_spelled(spelled: str) -> None:
    _check_spelling(spelled, METADATA_V4)
    with pytest.raises(BlockedDestination, match="link-local"):
        resolve(spelled, 80, (), _no_resolver)


@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=20))
@example("0x")
@example("1.2.3.4.5")
@example("08")
@example("1..2")
def test_a_literal_is_read_as_libc_reads_it(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    got = parse_ip_literal(text)
    if expected is not None or got is None:
        assert got == expected
    else:
        # The one difference: a bare "0x" part, which libc refuses and URL parsers (WHATWG)
        # read as 0. Reading it as an address fails closed: the address is then checked.
        assert any(part.lower() == "0x" for part in text.split(".")), (text, got)


DNS_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,15}){1,3}", fullmatch=True)


@given(
    DNS_NAMES,
    st.lists(PUBLIC_V4.map(str), min_size=0, max_size=4),
    non_public_v4().map(str) | st.sampled_from(["::1", "fd00:ec2::254", "::ffff:10.0.0.1"]),
    st.data(),
)
def test_a_name_resolving_to_any_private_address_is_refused(
    host: str, public: list[str], private: str, data: st.DataObject
) -> None:
    answers = list(public)
    answers.insert(data.draw(st.integers(0, len(answers))), private)
    calls: list[str] = []

    def fake(name: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        calls.append(name)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    with pytest.raises(BlockedDestination):
        resolve(host, 443, (), fake)
    assert calls == [host]  # resolved once


@given(DNS_NAMES, st.lists(PUBLIC_V4.map(str), min_size=1, max_size=4))
def test_a_name_resolving_to_public_addresses_only_gets_them_all(
    host: str, public: list[str]
) -> None:
    def fake(name: str, port: int) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in public]

    assert resolve(host, 443, (), fake) == list(dict.fromkeys(public))


# -- the command line, where no database is needed ------------------------------------------


def run(args: Sequence[str], env: dict[str, str] | None = None) -> Any:
    """Invoke `webhooks` in this process, settings read afresh from `env`."""
    cli.settings.cache_clear()
    base = {"DATABASE_URL": "", "REDIS_URL": "", "WEBHOOKS_LOG_FORMAT": ""}
    try:
        return CliRunner().invoke(cli.main, list(args), env={**base, **(env or {})})
    finally:
        cli.settings.cache_clear()


def assert_one_line_usage_error(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=30))
@example("{not json")
@example("")
def test_publish_with_data_that_is_not_json_is_one_usage_error(data: str) -> None:
    try:
        json.loads(data)
    except ValueError:
        pass
    else:
        assume(False)
    # `@FILE` and `-` name where the data comes from (a file, stdin), not the data itself.
    assume(not data.startswith("@") and data != "-")
    result = run(["publish", "a.b", "--data", data], {"DATABASE_URL": "postgresql://nowhere/x"})
    assert_one_line_usage_error(result, "--data", "not valid JSON")


@settings(max_examples=20, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + " -!", min_size=1, max_size=12))
def test_a_bad_duration_option_is_one_usage_error(text: str) -> None:
    try:
        parse_duration(text)
    except ValueError:
        pass
    else:
        assume(False)
    env = {"DATABASE_URL": "postgresql://nowhere/x"}
    for option, args in (
        ("--older-than", ["prune", "--older-than", text]),
        ("--grace", ["endpoint", "rotate-secret", "x", "--grace", text]),
        ("--lease", ["relay", "--lease", text]),
    ):
        assert_one_line_usage_error(run(args, env), f"error: {option}: ")


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(
        [
            ["status"],
            ["check"],
            ["migrate"],
            ["endpoint", "list"],
            ["deliveries", "list"],
            ["dlq", "list"],
            ["publish", "a.b", "--data", "{}"],
        ]
    ),
    st.sampled_from(VARIABLES[1:]),
    st.sampled_from(["soon", "-1", "http://x", "xml", "10.0.0.0/33", "70000", ","]),
)
def test_a_malformed_setting_is_one_line_naming_it(
    args: list[str], variable: str, value: str
) -> None:
    try:
        Settings.from_env({variable: value})
    except ConfigError:
        pass
    else:
        assume(False)
    result = run(args, {"DATABASE_URL": "postgresql://nowhere/x", variable: value})
    assert_one_line_usage_error(result, variable)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["dlq", "list"],
        ["deliveries", "show", "1"],
        ["endpoint", "add", "https://example.com/hook"],
        ["publish", "a.b", "--data", "{}"],
    ],
)
def test_a_missing_database_url_is_one_line(args: list[str]) -> None:
    assert_one_line_usage_error(run(args), "DATABASE_URL")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["dlq", "replay"], "choose what to replay"),
        (["dlq", "list", "--since", "yesterdayish"], "--since: 'yesterdayish' is neither a time"),
        (["dlq", "list", "--since", "30"], "--since: '30' has no unit"),
        (["check", "--grace", "5parsecs"], "--grace: not a duration: '5parsecs'"),
        (["bench", "--receiver-delay", "100"], "--receiver-delay: '100' has no unit"),
        (["deliveries", "show", "one"], "one"),
        (["deliveries", "list", "--status", "lost"], "lost"),
        (["endpoint", "add"], "URL"),
        (["publish", "a.b"], "--data"),
        (["nonsense"], "nonsense"),
    ],
)
def test_bad_arguments_are_one_usage_error(args: list[str], needle: str) -> None:
    assert_one_line_usage_error(run(args, {"DATABASE_URL": "postgresql://nowhere/x"}), needle)
