"""The process-wide objects every part of the bridge shares: settings, database, Redis.

Web processes build one in ``create_app``; RQ worker processes build one lazily
on their first job from the same environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis

from bridge.config import Settings, load_settings
from bridge.crypto import SecretBox
from bridge.db import Database


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url, socket_connect_timeout=2, socket_timeout=10
        )

    @cached_property
    def secrets(self) -> SecretBox:
        return SecretBox(self.settings.secret_key)


_process_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The runtime of this process, built from the environment on first use."""
    global _process_runtime
    if _process_runtime is None:
        _process_runtime = Runtime(load_settings())
    return _process_runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install ``runtime`` as this process's (used by tests and the app factory)."""
    global _process_runtime
    _process_runtime = runtime
