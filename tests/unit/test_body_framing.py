"""Which requests `BodyLimit` refuses from their headers alone, before reading a byte."""

from __future__ import annotations

import pytest

from worker.api.limits import check_framing

LIMIT = 1000

CASES = [
    ([], None),
    ([(b"content-length", b"1000")], None),
    ([(b"content-length", b"0")], None),
    ([(b"transfer-encoding", b"chunked")], None),  # counted while it is read
    ([(b"content-length", b"1001")], 413),
    ([(b"content-length", b"99999999999999999999999")], 413),
    ([(b"content-length", b"-1")], 400),
    ([(b"content-length", b"12, 12")], 400),
    ([(b"content-length", b"10"), (b"content-length", b"20")], 400),
    ([(b"content-length", b"10"), (b"transfer-encoding", b"chunked")], 400),
    ([(b"Content-Length", b"5000")], 413),
]


@pytest.mark.parametrize(("headers", "status"), CASES)
def test_framing_is_refused_by_its_headers(
    headers: list[tuple[bytes, bytes]], status: int | None
) -> None:
    refused = check_framing(headers, LIMIT)
    assert (refused[0] if refused else None) == status
