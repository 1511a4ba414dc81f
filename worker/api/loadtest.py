"""Measure the API's latency at a fixed request rate: ``python -m worker.api.loadtest``.

Open loop: requests start on a fixed schedule whatever the answers' latency (a closed loop
would slow down with the server and hide its queueing), half ``POST /v1/events`` and half
``GET /v1/deliveries?limit=50``, against a running `webhooks api`. Prints p50 and p99 per
route, in milliseconds, and the count of non-2xx answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp


def percentile(values: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(base: str, key: str, rate: float, seconds: float) -> dict[str, dict[str, float]]:
    """Send ``rate`` requests per second for ``seconds``; return latency figures per route."""
    latencies: dict[str, list[float]] = {"POST /v1/events": [], "GET /v1/deliveries": []}
    errors = {name: 0 for name in latencies}
    headers = {"authorization": f"Bearer {key}"}
    # aiohttp, as the workers: a fraction of httpx's client CPU, which shares the machine.
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as client:

        async def one(n: int) -> None:
            started = time.perf_counter()
            if n % 2 == 0:
                name = "POST /v1/events"
                sent = client.post("/v1/events", json={"event_type": "load.test", "data": {"n": n}})
            else:
                name = "GET /v1/deliveries"
                sent = client.get("/v1/deliveries", params={"limit": 50})
            async with sent as answer:
                await answer.read()
                status = answer.status
            latencies[name].append((time.perf_counter() - started) * 1000)
            if status >= 300:
                errors[name] += 1

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return {
        name: {
            "requests": len(values),
            "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
            "errors": errors[name],
        }
        for name, values in latencies.items()
    }


def main() -> None:
    """Parse the command line and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key", required=True, help="An API key (webhooks api-key create).")
    parser.add_argument("--rate", type=float, default=100.0, help="Requests per second.")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    figures = asyncio.run(run(args.url, args.key, args.rate, args.seconds))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
