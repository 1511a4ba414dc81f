"""What `webhooks dev` says about the configured services it leaves alone or writes into."""

from __future__ import annotations

from worker.dev.demo import notice, without_password
from worker.settings import Settings


def test_nothing_configured_nothing_to_say() -> None:
    assert notice(Settings.from_env({}), use_configured=False) is None


def test_configured_services_are_named_and_left_alone() -> None:
    conf = Settings.from_env(
        {"DATABASE_URL": "postgresql://app:s3cret@db/app", "REDIS_URL": "redis://cache:6379/0"}
    )
    line = notice(conf, use_configured=False)
    assert line is not None
    assert line.startswith("DATABASE_URL and REDIS_URL set: the demo leaves them alone")
    assert "s3cret" not in line


def test_use_configured_says_what_it_writes_where_without_the_password() -> None:
    conf = Settings.from_env({"DATABASE_URL": "postgresql://app:s3cret@db/app"})
    line = notice(conf, use_configured=True)
    assert line is not None
    assert "writes into the database postgresql://app:***@db/app" in line
    assert "3 endpoints and 3 events in tenant 'default'" in line
    assert "0s,2s,4s" in line and "s3cret" not in line


def test_passwords_are_hidden_and_urls_without_one_kept() -> None:
    assert without_password("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert without_password("postgresql://u@h/d") == "postgresql://u@h/d"
