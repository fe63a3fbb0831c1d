"""Fixtures shared by every test: the reference folder, Redis, and free ports."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

from bridge.localredis import ensure_redis, start_private_redis

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The public reference material beside the clone; absent on a user's fresh clone."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"reference folder {SHARED_DIR} is absent (it is only beside CI clones)")
    return SHARED_DIR


# --- Redis -----------------------------------------------------------------


TEST_REDIS_DB = 9  # a database of its own so a developer's data in db 0 is never flushed


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """A real Redis server for this test session.

    ``TEST_REDIS_URL`` names one to use; otherwise the session starts a private
    ``redis-server`` on a free port, so tests never flush data of the machine's
    Redis (or of another test run going on at the same time).
    """
    if os.environ.get("TEST_REDIS_URL"):
        url, _proc = ensure_redis(os.environ["TEST_REDIS_URL"])
    else:
        url, _proc = start_private_redis()
    return url.rsplit("/", 1)[0]


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """A flushed Redis database for one test."""
    url = f"{redis_server_url}/{TEST_REDIS_DB}"
    client = redis_lib.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


# --- Databases -------------------------------------------------------------


POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """An empty, migrated database: a SQLite file, and PostgreSQL where one answers."""
    from bridge.db import Database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/bridge.db"
    else:
        if not _postgres_available():
            pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
        name = f"bridge_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

        def _drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        request.addfinalizer(_drop)
    db = Database(url)
    db.upgrade()
    db.engine.dispose()
    return url


@pytest.fixture
def sqlite_database_url(tmp_path) -> str:
    """A migrated SQLite database, for tests that need only one backend."""
    from bridge.db import Database

    url = f"sqlite:///{tmp_path}/bridge.db"
    db = Database(url)
    db.upgrade()
    db.engine.dispose()
    return url
