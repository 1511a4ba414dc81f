"""Postgres: connections, migrations, every SQL statement, secrets at rest."""
