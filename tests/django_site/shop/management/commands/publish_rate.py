"""``manage.py publish_rate``: time `producers.django.publish_many` (tests/publish_rates.py)."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

from producers.django import publish_many
from tests.publish_rates import events


class Command(BaseCommand):
    help = "Print the events per second of publish_many on this backend, as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=1000)
        parser.add_argument("--batches", type=int, default=10)
        parser.add_argument("--repeats", type=int, default=5)

    def handle(self, *args: Any, batch: int, batches: int, repeats: int, **options: Any) -> None:
        rates, cpu = [], []
        with transaction.atomic():
            publish_many(events(batch, 0))  # warm up
        for _ in range(repeats):
            with connection.cursor() as cursor:
                cursor.execute("truncate webhooks.outbox cascade")
            work = [events(batch, b * batch) for b in range(batches)]
            started, cpu_started = time.perf_counter(), time.process_time()
            for one in work:
                with transaction.atomic():
                    publish_many(one)
            elapsed = time.perf_counter() - started
            rates.append(batch * batches / elapsed)
            cpu.append((time.process_time() - cpu_started) / (batch * batches) * 1e6)
        self.stdout.write(json.dumps({"rates": rates, "cpu_us": statistics.median(cpu)}))
