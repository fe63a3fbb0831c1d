"""Settings read once from the environment (12-factor).

Every process (web, worker, scheduler, CLI) builds one ``Settings`` at start.
A missing or malformed value raises ``ConfigError`` whose message is one line
that names the variable, so the process can exit with that line instead of a
traceback.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

DEFAULT_DATABASE_URL = "sqlite:///instance/bridge.db"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


class ConfigError(Exception):
    """A setting is missing or malformed; the message is safe to print as is."""


@dataclass(frozen=True)
class Settings:
    """The bridge's configuration. See the table in README.md."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    secret_key: bytes = field(default=b"", repr=False)
    entra_client_id: str = ""
    entra_client_secret: str = field(default="", repr=False)
    entra_authority_host: str = DEFAULT_AUTHORITY_HOST
    ca_bundle: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    sandbox: bool = False
    max_body_bytes: int = 1024 * 1024
    ac_requests_per_second: int = 5
    initial_sync_page_size: int = 5000
    allow_loopback_hosts: bool = False

    @property
    def requests_verify(self) -> str | bool:
        """What ``requests`` should verify TLS against (an extra CA in sandbox and tests)."""
        return self.ca_bundle or True


def _require_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        raise ConfigError(
            f"{name} must be a URL starting with {' or '.join(schemes)}://, got {value!r}"
        )
    return value


def _decode_secret_key(raw: str) -> bytes:
    """The key is 32 random bytes, URL-safe base64 (``python -m bridge.cli new-key`` prints one)."""
    try:
        key = base64.urlsafe_b64decode(raw.encode())
    except (binascii.Error, ValueError):
        raise ConfigError("BRIDGE_SECRET_KEY must be URL-safe base64 of 32 bytes") from None
    if len(key) != 32:
        raise ConfigError(f"BRIDGE_SECRET_KEY must decode to 32 bytes, got {len(key)}")
    return base64.urlsafe_b64encode(key)


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    return value


def _page_size(raw: str) -> int:
    value = _positive_int("INITIAL_SYNC_PAGE_SIZE", raw)
    if value > 5000:
        raise ConfigError(f"INITIAL_SYNC_PAGE_SIZE is at most 5000 (Dataverse's page), got {value}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``env`` (default: ``os.environ``), validating every value."""
    env = os.environ if env is None else env
    sandbox = _flag("BRIDGE_SANDBOX", env.get("BRIDGE_SANDBOX", ""))

    secret_raw = env.get("BRIDGE_SECRET_KEY", "")
    if not secret_raw:
        raise ConfigError(
            "BRIDGE_SECRET_KEY is not set: it encrypts stored secrets "
            "(generate one with: python -m bridge.cli new-key)"
        )
    client_id = env.get("ENTRA_CLIENT_ID", "")
    client_secret = env.get("ENTRA_CLIENT_SECRET", "")
    if bool(client_id) != bool(client_secret):
        raise ConfigError("ENTRA_CLIENT_ID and ENTRA_CLIENT_SECRET must be set together")

    log_level = env.get("LOG_LEVEL", "INFO").upper()
    if log_level not in logging.getLevelNamesMapping():
        raise ConfigError(
            f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got {log_level!r}"
        )

    ca_bundle = env.get("BRIDGE_CA_BUNDLE") or None
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ConfigError(f"BRIDGE_CA_BUNDLE points to {ca_bundle!r}, which is not a file")

    return Settings(
        database_url=_require_url(
            "DATABASE_URL",
            env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            ("sqlite", "postgresql", "postgresql+psycopg"),
        ),
        redis_url=_require_url(
            "REDIS_URL", env.get("REDIS_URL", DEFAULT_REDIS_URL), ("redis", "rediss", "unix")
        ),
        secret_key=_decode_secret_key(secret_raw),
        entra_client_id=client_id,
        entra_client_secret=client_secret,
        entra_authority_host=_require_url(
            "ENTRA_AUTHORITY_HOST",
            env.get("ENTRA_AUTHORITY_HOST", DEFAULT_AUTHORITY_HOST),
            ("https",),
        ).rstrip("/"),
        ca_bundle=ca_bundle,
        public_url=_require_url(
            "BRIDGE_PUBLIC_URL",
            env.get("BRIDGE_PUBLIC_URL", "http://127.0.0.1:8000"),
            ("http", "https"),
        ).rstrip("/"),
        log_level=log_level,
        sandbox=sandbox,
        max_body_bytes=_positive_int(
            "BRIDGE_MAX_BODY_BYTES", env.get("BRIDGE_MAX_BODY_BYTES", "1048576")
        ),
        ac_requests_per_second=_positive_int(
            "AC_REQUESTS_PER_SECOND", env.get("AC_REQUESTS_PER_SECOND", "5")
        ),
        initial_sync_page_size=_page_size(env.get("INITIAL_SYNC_PAGE_SIZE", "5000")),
        allow_loopback_hosts=sandbox
        or _flag("BRIDGE_ALLOW_LOOPBACK_HOSTS", env.get("BRIDGE_ALLOW_LOOPBACK_HOSTS", "")),
    )
