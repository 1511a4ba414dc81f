"""The shared receiver: answers that block hold up nothing else, pipelined answers keep their
order, a request cut short is counted and not recorded, bad signatures are answered 401."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from worker.dev.receiver import Answer, Receiver, running_receiver
from worker.policy import signing


def read_answers(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"HTTP/1.1 ") < count or not data.endswith((b"first", b"second")):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_an_answer_that_blocks_holds_up_no_other_request() -> None:
    released = threading.Event()

    def held(_: int) -> Answer:
        released.wait(30)
        return 200, {}, b"late"

    with running_receiver() as receiver:
        receiver.on("/held", held)
        slow = threading.Thread(target=httpx.post, args=(receiver.url("/held"),), daemon=True)
        slow.start()
        receiver.wait_for("/held", 1)
        started = time.monotonic()
        assert httpx.post(receiver.url("/fast"), content=b"{}", timeout=10).status_code == 200
        assert time.monotonic() - started < 5
        released.set()
        slow.join(10)


def test_pipelined_answers_keep_their_order_when_the_first_is_slower() -> None:
    def first(_: int) -> Answer:
        time.sleep(0.3)
        return 200, {}, b"first"

    with running_receiver() as receiver:
        receiver.on("/first", first)
        receiver.on("/second", lambda _: (201, {}, b"second"))
        request = "POST {} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}"
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
            sock.sendall((request.format("/first") + request.format("/second")).encode())
            answers = read_answers(sock, 2)
    assert answers.index(b"200 OK") < answers.index(b"201 Created")
    assert answers.endswith(b"second")


def test_a_request_whose_sender_vanishes_mid_body_is_counted_not_recorded() -> None:
    with running_receiver() as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
            sock.sendall(b"POST /cut HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123")
        deadline = time.monotonic() + 10
        while receiver.cut_short == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.cut_short == 1
        assert receiver.requests == []


def test_a_path_with_a_secret_answers_401_to_a_bad_signature() -> None:
    secret = signing.generate_secret()
    body = b'{"type":"t"}'
    stamp = int(time.time())
    good = signing.sign(signing.decode_secret(secret), "evt_1", stamp, body)
    with running_receiver(Receiver(secrets={"/signed": secret})) as receiver:
        for signature in (good, "v1,bogus"):
            headers = {
                "webhook-id": "evt_1",
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature,
            }
            httpx.post(receiver.url("/signed"), content=body, headers=headers, timeout=10)
        httpx.post(receiver.url("/open"), content=body, timeout=10)
    assert [(r.status, r.verified) for r in receiver.requests] == [
        (200, True),
        (401, False),
        (200, None),
    ]
    assert receiver.requests[1].problem == "signature does not verify"
