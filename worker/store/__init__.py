"""Postgres: connections, migrations, every SQL statement, secrets at rest, typed rows.

Only this package runs SQL: each area's module (endpoints, deliveries, events, dlq, prune,
status, apikeys, portal, bench, watch) runs the named statements of `queries` and returns
frozen dataclasses; `rows` says how, and is the pattern for new ones.
"""
