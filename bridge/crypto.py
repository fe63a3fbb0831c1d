"""Secrets at rest: encryption for values the bridge must use again, hashes for the rest.

The ActiveCampaign API key must be sent back to ActiveCampaign, so it is
encrypted (Fernet, key from ``BRIDGE_SECRET_KEY``). Webhook secrets are only
ever compared, so only their SHA-256 is stored and comparisons run in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Encrypts and decrypts short secrets with the bridge's key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with BRIDGE_SECRET_KEY") from None


def new_secret_key() -> str:
    """A fresh value for ``BRIDGE_SECRET_KEY``."""
    return Fernet.generate_key().decode()


def new_token(nbytes: int = 32) -> str:
    """An unguessable URL-safe token (webhook keys, per-connection URLs)."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secret_matches(candidate: str, stored_hash: str | None) -> bool:
    """Constant-time check of ``candidate`` against a stored hash."""
    if not candidate or not stored_hash:
        return False
    return hmac.compare_digest(hash_secret(candidate), stored_hash)
