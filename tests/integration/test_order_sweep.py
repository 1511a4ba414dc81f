"""The relay's safety net for ordered delivery: which waiting deliveries its sweep wakes.

`sweep_ordered` wakes the first pending delivery of a key when it still waits (a claim that
saw its predecessor pending while that one was finishing leaves such a key), and nothing
else: not a key whose head is in flight, not the second of a key, not a key held by a dead
head under `block`. It finds the heads with a loose index scan, one probe per key.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.pipeline import Pipeline, fan_out
from worker.store import relay as store


def test_the_sweep_wakes_exactly_the_waiting_heads_of_their_keys(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    p = make_pipeline()
    a, _ = p.endpoint("http://127.0.0.1:9/a", ordered=True, event_types=["a.*"])
    b, _ = p.endpoint("http://127.0.0.1:9/b", ordered=True, event_types=["b.*"])
    events: dict[tuple[str, str], list[str]] = {}
    for key, count, event_type in [
        ("in-flight", 3, "a.x"),
        ("head-done", 3, "a.x"),
        ("head-dead", 2, "a.x"),
        ("left-waiting", 2, "b.x"),
        ("", 2, "b.x"),
    ]:
        for n in range(count):
            kwargs = {"ordering_key": key} if key else {}
            events.setdefault((event_type, key), []).append(
                p.publish(event_type, {"n": n}, **kwargs)
            )
    fan_out(p)

    def delivery(event_type: str, key: str, n: int, endpoint: str) -> int:
        event_id = events[(event_type, key)][n]
        return int(
            p.value(
                "select id from webhooks.deliveries where event_id = %s and endpoint_id = %s",
                event_id,
                endpoint,
            )
        )

    # The fan-out gave each key's first delivery a message and made the others wait.
    waiting = p.value("select count(*) from webhooks.deliveries where order_wait")
    heads = p.value("select count(*) from webhooks.deliveries where not order_wait")
    assert heads == 3 + 2  # a: three keys; b: both of its keys
    assert waiting == p.value("select count(*) from webhooks.deliveries") - heads

    done = delivery("a.x", "head-done", 0, a)
    dead = delivery("a.x", "head-dead", 0, a)
    stray = delivery("b.x", "left-waiting", 0, b)
    p.conn.execute("update webhooks.deliveries set status = 'succeeded' where id = %s", (done,))
    p.conn.execute(
        "update webhooks.deliveries set status = 'dead', dead_reason = 'expired' where id = %s",
        (dead,),
    )
    p.conn.execute("update webhooks.deliveries set order_wait = true where id = %s", (stray,))

    # Under block, the dead head holds its key.
    woken = {w.id for w in store.sweep_ordered(p.conn, 1000, 30.0, True)}
    assert woken == {delivery("a.x", "head-done", 1, a), stray}
    # Woken once: a second sweep finds them no longer waiting.
    assert store.sweep_ordered(p.conn, 1000, 30.0, True) == []
    # Under continue, the dead head's successor goes on.
    woken = {w.id for w in store.sweep_ordered(p.conn, 1000, 30.0, False)}
    assert woken == {delivery("a.x", "head-dead", 1, a)}
    for delivery_id in (*woken, stray):
        message = p.value(
            "select message_id is not null and not order_wait from webhooks.deliveries"
            " where id = %s",
            delivery_id,
        )
        assert message
    # Nothing else moved: the in-flight key and the keyless one keep their waiting ones.
    # (the stray head was made to wait, then woken with two others)
    assert p.value("select count(*) from webhooks.deliveries where order_wait") == waiting + 1 - 3


def test_the_sweep_takes_a_batch_at_a_time(make_pipeline: Callable[..., Pipeline]) -> None:
    p = make_pipeline()
    p.endpoint("http://127.0.0.1:9/a", ordered=True)
    for n in range(5):
        p.publish("a.x", {"n": n}, ordering_key=f"k{n}")
    fan_out(p)
    p.conn.execute("update webhooks.deliveries set order_wait = true, message_id = null")
    assert len(store.sweep_ordered(p.conn, 2, 30.0, False)) == 2
    assert len(store.sweep_ordered(p.conn, 10, 30.0, False)) == 3
    assert store.sweep_ordered(p.conn, 10, 30.0, False) == []
