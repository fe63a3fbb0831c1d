"""Liveness and readiness probes."""

from __future__ import annotations

import socket

import pytest
import requests

from bridge.app import create_app
from bridge.runtime import set_runtime
from emulators.server import serve_in_thread
from tests.web import assert_error, make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def build_app():
    apps = []

    def build(database_url: str, redis_url: str):
        app = create_app(make_settings(database_url, redis_url))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["bridge.runtime"].db.engine.dispose()
    set_runtime(None)


def test_healthz_needs_nothing(build_app, redis_url):
    app = build_app(
        f"postgresql://nobody@127.0.0.1:{free_port()}/x", f"redis://127.0.0.1:{free_port()}/0"
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_everything_answers(build_app, database_url, redis_url):
    response = build_app(database_url, redis_url).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_names_redis_when_it_is_down(build_app, sqlite_database_url):
    app = build_app(sqlite_database_url, f"redis://127.0.0.1:{free_port()}/0")
    error = assert_error(app.test_client().get("/readyz"), 503, "not_ready")
    assert error["fields"] == {"database": "ok", "redis": "unreachable"}
    assert "redis" in error["message"] and "database" not in error["message"]


def test_readyz_names_the_database_when_it_is_down(build_app, redis_url):
    app = build_app(f"postgresql://nobody:pw@127.0.0.1:{free_port()}/x", redis_url)
    response = app.test_client().get("/readyz")
    error = assert_error(response, 503, "not_ready")
    assert error["fields"] == {"database": "unreachable", "redis": "ok"}
    assert "pw" not in response.get_data(as_text=True)  # no URLs, no credentials


def test_probes_over_real_http(build_app, sqlite_database_url, redis_url):
    server = serve_in_thread(build_app(sqlite_database_url, redis_url))
    try:
        assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
    finally:
        server.stop()


def test_wsgi_exits_with_one_line_on_bad_settings():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", "import bridge.wsgi"],
        cwd=repo,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": "http://nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bridge: configuration error: BRIDGE_SECRET_KEY is not set")
    assert "Traceback" not in result.stderr


def test_unexpected_errors_are_generic_json(build_app, sqlite_database_url, redis_url, caplog):
    app = build_app(sqlite_database_url, redis_url)

    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail that must not leak")

    response = app.test_client().get("/boom?code=secret-value")
    error = assert_error(response, 500, "internal_error")
    assert "internal detail" not in error["message"]
    assert any("unhandled error serving GET /boom" in m for m in caplog.messages)
    assert all("secret-value" not in m for m in caplog.messages)
