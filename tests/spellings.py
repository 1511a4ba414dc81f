"""Spellings of an IP address a user or an attacker may type, for hypothesis.

Each folds back to the same address through libc's inet_aton (radixes, fewer parts) or
through IDNA/UTS-46 with NFKC (Unicode digits, dots and letters), as the sender reads it.
"""

from __future__ import annotations

import ipaddress
import string

from hypothesis import strategies as st

__all__ = ["inet_aton", "unicode_spelling"]

# What IDNA (UTS-46, NFKC) folds to an ASCII digit: full-width, mathematical bold and
# monospace, superscript, circled (1-9) and the circled zero.
DIGIT_FORMS: dict[str, list[str]] = {
    d: [
        d,
        chr(0xFF10 + int(d)),
        chr(0x1D7CE + int(d)),
        chr(0x1D7F6 + int(d)),
        "⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)],
        "⓪①②③④⑤⑥⑦⑧⑨"[int(d)],
    ]
    for d in string.digits
}
# The dots IDNA reads as a label separator: ASCII, ideographic, full-width, halfwidth.
DOT_FORMS = [".", "\u3002", "\uff0e", "\uff61"]
LETTER_FORMS: dict[str, list[str]] = {
    c: [c, c.upper(), chr(0xFF41 + ord(c) - ord("a")), chr(0xFF21 + ord(c) - ord("a"))]
    for c in "abcdefx"
}


@st.composite
def inet_aton(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """Spell ``address`` as libc's inet_aton reads it: 1-4 parts, each in some radix."""
    packed = address.packed
    count = draw(st.integers(1, 4))
    values = [*packed[: count - 1], int.from_bytes(packed[count - 1 :], "big")]
    parts = []
    for value in values:
        radix = draw(st.sampled_from(["dec", "oct", "hex"]))
        if radix == "dec":
            parts.append(str(value))
        elif radix == "oct":
            parts.append("0" + format(value, "o") if value else "0")
        else:
            parts.append(draw(st.sampled_from(["0x", "0X"])) + format(value, "x"))
    return ".".join(parts)


@st.composite
def unicode_spelling(draw: st.DrawFn, ascii_host: str) -> str:
    """Replace characters of ``ascii_host`` by forms IDNA folds back to them."""
    out = []
    for ch in ascii_host:
        if ch in DIGIT_FORMS:
            out.append(draw(st.sampled_from(DIGIT_FORMS[ch])))
        elif ch == ".":
            out.append(draw(st.sampled_from(DOT_FORMS)))
        elif ch in LETTER_FORMS:
            out.append(draw(st.sampled_from(LETTER_FORMS[ch])))
        else:
            out.append(ch)
    return "".join(out)
