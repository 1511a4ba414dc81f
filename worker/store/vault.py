"""Encrypt endpoint secrets and custom header values at rest with WEBHOOKS_SECRET_KEY.

Fernet, from `cryptography`. Both kinds of value are sealed alike, by the same keys, and are
opened alike: a stored value without the `PREFIX` is plain (written while no key was set)
and opens as it is, until `webhooks endpoint reencrypt` seals it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from worker.errors import ConfigError

PREFIX = "enc:v1:"
#: Characters each key must have at least: a key is hashed, not stretched, so it must be
#: random and long. ``secrets.token_urlsafe(32)`` gives 43.
MIN_KEY_LENGTH = 32
#: The one-line command the README and the errors suggest for a new key.
KEY_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
log = logging.getLogger("webhooks.vault")


def _fernet(key: str) -> Fernet:
    # Any long random string works as a key: SHA-256 turns it into Fernet's 32 bytes.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def split_keys(text: str | None) -> list[str]:
    """Return the keys of a WEBHOOKS_SECRET_KEY value (a comma list, newest first)."""
    return [k.strip() for k in (text or "").split(",") if k.strip()]


def check_keys(text: str) -> str:
    """Return ``text`` if every key in it is long enough, else raise ValueError."""
    for number, key in enumerate(split_keys(text), 1):
        if len(key) < MIN_KEY_LENGTH:
            which = "the key" if "," not in text else f"key {number} of the list"
            raise ValueError(
                f"too short: {which} has {len(key)} characters,"
                f" at least {MIN_KEY_LENGTH} are needed"
                f" (generate one with: {KEY_COMMAND})"
            )
    return text


class Vault:
    """Seal and open endpoint secrets; without a key, secrets are stored as they are.

    WEBHOOKS_SECRET_KEY may hold several keys separated by commas: the first seals, all
    open, so the key can be rotated by prepending a new one.
    """

    def __init__(self, key: str | None) -> None:
        keys = split_keys(key)
        self._box = MultiFernet([_fernet(k) for k in keys]) if keys else None

    @property
    def encrypts(self) -> bool:
        """Tell whether new secrets are stored encrypted."""
        return self._box is not None

    def seal(self, secret: str) -> str:
        """Return the form of ``secret`` stored in the database."""
        if self._box is None:
            return secret
        return PREFIX + self._box.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """Return the secret from its stored form; raise ConfigError without the right key."""
        return _open(self, stored)

    def reseal(self, stored: str) -> str:
        """Return ``stored`` sealed with the first key (plain stays plain without a key)."""
        return self.seal(self.open(stored))

    # Custom headers are sealed value by value inside their jsonb object, not as one blob:
    # the names stay readable to operators and to SQL (which endpoints send Authorization?),
    # each value is sealed, opened, cached and re-encrypted exactly like a signing secret,
    # and a row written before a key was set (plain values) reads the same way as before.
    def seal_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Return the stored form of custom headers: each value sealed, names as they are."""
        return {name: self.seal(value) for name, value in headers.items()}

    def open_headers(self, stored: Mapping[str, str]) -> dict[str, str]:
        """Return custom headers from their stored form; raise ConfigError as `open` does."""
        if not stored:  # most endpoints: no custom header
            return {}
        return {name: self.open(value) for name, value in stored.items()}

    def check_opens(self, stored: Iterable[str]) -> None:
        """Raise ConfigError unless this vault can open every stored secret given.

        Kept by every writer of secrets: a new secret sealed with a key that cannot open the
        others (or stored plain beside sealed ones) would be written with a key the workers
        do not share, and deliveries would stop.
        """
        for value in stored:
            if not value.startswith(PREFIX):
                continue
            if self._box is None:
                raise ConfigError(
                    "WEBHOOKS_SECRET_KEY",
                    "not set, but stored endpoint secrets are encrypted: set the key they were"
                    " encrypted with (nothing was written)",
                )
            try:
                self.open(value)
            except ConfigError:
                raise ConfigError(
                    "WEBHOOKS_SECRET_KEY",
                    "does not decrypt the endpoint secrets already stored (wrong key?);"
                    " nothing was written",
                ) from None


#: Opened values kept per process. Every endpoint a worker delivers to needs its secrets and
#: its sealed header values opened for each attempt; a Fernet open costs ~10 µs of CPU (a
#: delivery's whole budget is ~300 µs), a cached one ~0.2 µs. An entry is ~0.5 KB, so the
#: cache holds at most ~8 MB, and a working set of thousands of endpoints (a secret and a
#: header or two each) still fits: an LRU smaller than the set it cycles through hits never.
CACHED_VALUES = 16384


@lru_cache(maxsize=CACHED_VALUES)
def _open(vault: Vault, stored: str) -> str:
    # Cached: workers open the same values for every delivery to an endpoint.
    if not stored.startswith(PREFIX):
        return stored
    if vault._box is None:
        raise ConfigError("WEBHOOKS_SECRET_KEY", "endpoint secrets are encrypted but no key is set")
    try:
        return vault._box.decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ConfigError(
            "WEBHOOKS_SECRET_KEY", "does not decrypt the stored endpoint secrets (wrong key?)"
        ) from None
