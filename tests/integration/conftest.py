"""The whole product on one machine: emulators, the bridge over HTTP, RQ worker processes.

Fixtures here start real parts only: both emulators as HTTP(S) servers, the
bridge's Flask app on a real socket, and ``rq worker`` subprocesses that read
their settings from the environment exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.crypto import new_secret_key

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "integration-secret"
AC_KEY = "integration-ac-key"
# A second Entra app standing in for a person working in Dynamics, so that the
# changes under test are not written by the bridge's own application user.
SALES_APP_ID = "99999999-2222-4333-8444-555555555555"
SALES_APP_SECRET = "sales-app-secret"


@pytest.fixture
def dataverse():
    from emulators.dataverse import DataverseEmulator

    emu = DataverseEmulator(apps={CLIENT_ID: CLIENT_SECRET, SALES_APP_ID: SALES_APP_SECRET}).start()
    yield emu
    emu.stop()


@pytest.fixture
def activecampaign():
    from emulators.activecampaign import ActiveCampaignEmulator

    emu = ActiveCampaignEmulator(api_key=AC_KEY, requests_per_second=5).start()
    yield emu
    emu.stop()


@pytest.fixture
def bridge_env(dataverse, sqlite_database_url, redis_url) -> dict[str, str]:
    """Environment variables of every bridge process in these tests."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BRIDGE_", "ENTRA_", "DATABASE_", "REDIS_"))
    }
    env.update(
        BRIDGE_SECRET_KEY=new_secret_key(),
        DATABASE_URL=sqlite_database_url,
        REDIS_URL=redis_url,
        ENTRA_CLIENT_ID=CLIENT_ID,
        ENTRA_CLIENT_SECRET=CLIENT_SECRET,
        ENTRA_AUTHORITY_HOST=dataverse.authority_host,
        BRIDGE_CA_BUNDLE=str(dataverse.ca_bundle),
        BRIDGE_ALLOW_LOOPBACK_HOSTS="1",
        LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def bridge_settings(bridge_env):
    from bridge.config import load_settings

    return load_settings(bridge_env)


@pytest.fixture
def bridge_server(bridge_env):
    """The bridge's Flask app on a real local port; ``BRIDGE_PUBLIC_URL`` is set to it."""
    from bridge.app import create_app
    from bridge.config import load_settings
    from bridge.runtime import set_runtime
    from emulators.server import serve_in_thread

    # Bind first so the public URL (needed by the settings) is known.
    app = create_app(load_settings(bridge_env))
    server = serve_in_thread(app)
    bridge_env["BRIDGE_PUBLIC_URL"] = server.url
    yield server
    server.stop()
    set_runtime(None)


@pytest.fixture
def start_workers(bridge_env) -> Iterator[Callable[..., list[subprocess.Popen]]]:
    """Start ``rq worker`` processes on the given queues; all are stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(
        count: int = 1,
        queues: tuple[str, ...] = ("actions", "realtime", "bulk"),
        burst: bool = False,
    ) -> list[subprocess.Popen]:
        for _ in range(count):
            argv = [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "--url",
                bridge_env["REDIS_URL"],
                "--with-scheduler",
                "--path",
                str(REPO_ROOT),
                "--logging_level",
                "WARNING",
            ]
            if burst:
                argv.append("--burst")
            procs.append(
                subprocess.Popen(
                    [*argv, *queues], env=bridge_env, cwd=REPO_ROOT, start_new_session=True
                )
            )
        return procs

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def sales_user(dataverse):
    """A Dataverse Web API client acting as someone working in Dynamics."""
    from bridge.clients.dataverse import DataverseClient

    return DataverseClient(
        dataverse.url,
        tenant_id=dataverse.tenant_id,
        client_id=SALES_APP_ID,
        client_secret=SALES_APP_SECRET,
        authority_host=dataverse.authority_host,
        verify=str(dataverse.ca_bundle),
    )


@pytest.fixture
def connected(bridge_server, bridge_env, dataverse, activecampaign) -> int:
    """A connection between the two emulators with the Dataverse webhooks registered."""
    from bridge.config import load_settings
    from bridge.provisioning import connect_and_register

    return connect_and_register(
        load_settings(bridge_env),
        dataverse_url=dataverse.url,
        org_id=dataverse.org_id,
        tenant_id=dataverse.tenant_id,
        ac_api_url=activecampaign.url,
        ac_api_key=AC_KEY,
        name="Integration",
    )


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail with a clear message."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def runtime(bridge_env):
    """The bridge's runtime (settings, database, Redis) for calling plain functions directly."""
    from bridge.config import load_settings
    from bridge.runtime import Runtime

    rt = Runtime(load_settings(bridge_env))
    yield rt
    rt.db.engine.dispose()
    rt.redis.close()


@pytest.fixture
def connection_id(runtime, dataverse, activecampaign) -> int:
    """A connection between the emulators with NO Dataverse webhooks registered: changes wait
    until a test pushes them (or the scheduled sync finds them)."""
    from bridge.connections import create_connection

    with runtime.db.session() as session:
        return create_connection(
            session, runtime.secrets,
            dataverse_url=dataverse.url, dataverse_org_id=dataverse.org_id,
            tenant_id=dataverse.tenant_id, ac_api_url=activecampaign.url, ac_api_key=AC_KEY,
        ).id
