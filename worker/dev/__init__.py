"""Run the product on one machine: `webhooks dev`'s demo, embedded services, a real receiver.

`demo` is `webhooks dev`; `embedded` starts Postgres and Redis when none is configured;
`receiver` (over `server`) is the HTTP receiver the demo, the bench and the tests share.
"""

from __future__ import annotations

from worker.dev.demo import run

__all__ = ["run"]
