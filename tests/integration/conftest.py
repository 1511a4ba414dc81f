from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.pipeline import Pipeline
from tests.receiver import Receiver, running_receiver


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event a `hold_until` route waits on; set at the end whatever happened."""
    released = threading.Event()
    yield released
    released.set()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def make_pipeline(db_url: str, redis_url: str) -> Iterator[Callable[..., Pipeline]]:
    """Build pipelines on Redis (a test asks for `broker_url` to run on both brokers)."""
    made: list[Pipeline] = []

    def make(**overrides: Any) -> Pipeline:
        p = Pipeline(db_url, redis_url, **overrides)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def on_broker(
    make_pipeline: Callable[..., Pipeline], broker_url: str, rabbitmq_queue_type: str
) -> Callable[..., Pipeline]:
    """Build pipelines on each broker in turn (`broker_url` is parametrised)."""

    def make(**overrides: Any) -> Pipeline:
        overrides.setdefault("rabbitmq_queue_type", rabbitmq_queue_type)
        return make_pipeline(broker_url=broker_url, **overrides)

    return make


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()
