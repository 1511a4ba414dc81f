"""Secret-bearing values are shown by their start only, short ones not at all."""

from __future__ import annotations

import pytest

from worker.policy.redaction import MARKER, MIN_SHOWN_LENGTH, redact, redact_headers

TOKEN = "0123456789abcdefghij"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (f"Bearer {TOKEN}", "Bear…(redacted)"),
        (f"Basic {TOKEN}", "Basi…(redacted)"),
        (TOKEN, "0123…(redacted)"),
        ("x" * MIN_SHOWN_LENGTH, "xxxx…(redacted)"),
        ("x" * (MIN_SHOWN_LENGTH - 1), MARKER),
        ("Bearer t", MARKER),
        ("one", MARKER),
        ("a", MARKER),
        ("", ""),
    ],
)
def test_a_value_keeps_its_first_characters_only_when_long_enough(value: str, shown: str) -> None:
    assert redact(value) == shown


@pytest.mark.parametrize("length", range(1, 80))
def test_no_value_shows_more_than_a_quarter_of_itself(length: int) -> None:
    value = "s" * length
    kept = redact(value).removesuffix(MARKER).removesuffix("…")
    assert value.startswith(kept) and len(kept) * 4 <= length


def test_header_names_stay_readable_and_every_value_is_redacted() -> None:
    assert redact_headers({"Authorization": f"Bearer {TOKEN}", "X-Team": "one"}) == {
        "Authorization": "Bear…(redacted)",
        "X-Team": "(redacted)",
    }
