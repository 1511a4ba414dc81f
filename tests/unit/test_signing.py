"""Specify Standard Webhooks signing, checked against the official vector and verifiers."""

from __future__ import annotations

import base64
import time

import pytest
import standardwebhooks
import svix

from worker.errors import InvalidEndpoint
from worker.policy.signing import decode_secret, generate_secret, sign, signature_header

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_the_official_vector() -> None:
    key = decode_secret(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_signature_header_has_one_signature_per_key_in_order() -> None:
    old, new = decode_secret(VECTOR_SECRET), decode_secret(generate_secret())
    header = signature_header([old, new], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert header.split(" ") == [
        VECTOR_SIGNATURE,
        sign(new, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
    ]


def test_signature_header_needs_a_key() -> None:
    with pytest.raises(ValueError):
        signature_header([], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)


def test_generate_secret_is_prefixed_base64_of_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert decode_secret(first) != decode_secret(second)


@pytest.mark.parametrize(
    "secret",
    [
        VECTOR_SECRET,
        VECTOR_SECRET.removeprefix("whsec_"),
        f"  {VECTOR_SECRET}\n",
    ],
)
def test_decode_secret_accepts_prefixed_and_bare_forms(secret: str) -> None:
    assert decode_secret(secret) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_decode_secret_accepts_unpadded_base64() -> None:
    key = bytes(range(25))  # 25 bytes encode with "==" padding
    unpadded = base64.b64encode(key).decode().rstrip("=")
    assert decode_secret("whsec_" + unpadded) == key


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        "whsec_not base64!",
        "whsec_" + "A" * 33,  # impossible base64 length
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
    ],
)
def test_decode_secret_rejects_bad_secrets(secret: str) -> None:
    with pytest.raises(InvalidEndpoint, match="secret is not valid"):
        decode_secret(secret)


def _rotating_request() -> tuple[str, str, bytes, dict[str, str]]:
    old, new = generate_secret(), generate_secret()
    body = b'{"type": "invoice.paid", "timestamp": "2024-01-01T00:00:00Z", "data": {"n": 1}}'
    # Both verifiers refuse timestamps more than five minutes away from their clock.
    timestamp = int(time.time())
    header = signature_header([decode_secret(old), decode_secret(new)], VECTOR_ID, timestamp, body)
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": header,
    }
    return old, new, body, headers


def test_standardwebhooks_accepts_a_rotation_header_under_each_secret() -> None:
    old, new, body, headers = _rotating_request()
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret).verify(body, headers)["data"] == {"n": 1}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(body, headers)


def test_svix_accepts_a_rotation_header_under_each_secret() -> None:
    old, new, body, headers = _rotating_request()
    for secret in (old, new):
        svix.Webhook(secret).verify(body, headers)
    with pytest.raises(svix.WebhookVerificationError):
        svix.Webhook(generate_secret()).verify(body, headers)


def test_verify_accepts_what_sign_makes_and_nothing_else() -> None:
    from worker.policy.signing import generate_secret, signature_header, verify

    old, new = generate_secret(), generate_secret()
    keys = [decode_secret(new), decode_secret(old)]
    header = signature_header(keys, "msg_1", 1_700_000_000, b'{"a":1}')
    assert verify(old, "msg_1", "1700000000", b'{"a":1}', header, now=1_700_000_010)
    assert verify(new, "msg_1", "1700000000", b'{"a":1}', header, now=1_700_000_010)
    assert not verify(new, "msg_1", "1700000000", b'{"a":2}', header, now=1_700_000_010)
    assert not verify(new, "msg_2", "1700000000", b'{"a":1}', header, now=1_700_000_010)
    assert not verify(new, "msg_1", "1700000000", b'{"a":1}', header, now=1_700_001_000)
    assert not verify(new, "msg_1", "soon", b'{"a":1}', header)
    assert not verify(
        generate_secret(), "msg_1", "1700000000", b'{"a":1}', header, now=1_700_000_010
    )
