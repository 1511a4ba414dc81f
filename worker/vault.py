"""Encrypt endpoint secrets at rest with WEBHOOKS_SECRET_KEY (Fernet, from `cryptography`)."""

from __future__ import annotations

import base64
import hashlib
import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from worker.errors import ConfigError

PREFIX = "enc:v1:"
log = logging.getLogger("webhooks.vault")


def _fernet(key: str) -> Fernet:
    # Any long random string works as a key: SHA-256 turns it into Fernet's 32 bytes.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class Vault:
    """Seal and open endpoint secrets; without a key, secrets are stored as they are.

    WEBHOOKS_SECRET_KEY may hold several keys separated by commas: the first seals, all
    open, so the key can be rotated by prepending a new one.
    """

    def __init__(self, key: str | None) -> None:
        keys = [k.strip() for k in (key or "").split(",") if k.strip()]
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


@lru_cache(maxsize=4096)
def _open(vault: Vault, stored: str) -> str:
    # Cached: workers open the same few secrets for every delivery, and Fernet costs ~20 µs.
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
