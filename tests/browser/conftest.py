"""Browser tests: the web resources in the emulated Dynamics web client, driven by Chromium.

Everything is real and over HTTP(S): the Dataverse emulator (which also hosts the web client
shell, ``emulators/dataverse/webclient.py``), the ActiveCampaign emulator, the bridge's Flask app
on a local port, and Debian's Chromium driven by Playwright. Tests are marked
``@pytest.mark.browser`` and are skipped with a message when ``/usr/bin/chromium`` is missing.

Fixtures (reusable by every browser test):

``dev_host`` → ``DevHost``
    Both emulators and the bridge running, with the web client configured as an imported
    solution would be: ``ac_BridgeBaseUrl`` = the bridge's URL and ``ac_BridgeClientId`` = the
    bridge's client id (environment variables read by the pages through ``Xrm.WebApi``), and
    ``dataverse.bridge_client_id`` set so the shell hands out bridge tokens. The organization is
    *not* connected; add the ``connected`` fixture (from ``tests/integration/conftest.py``:
    connection + Dataverse webhooks, AC key ``AC_KEY``) for pages that need a connection.
    Attributes: ``dataverse``, ``activecampaign``, ``bridge_url``, ``settings``, ``env``;
    methods ``add_user(name, roles) -> oid``, ``page_url(webresource, data=None)`` (the app
    shell with that web resource, e.g. ``"ac_/html/settings.html"``), ``record_url(entity, id)``
    (the record form host with the command bar and the timeline web resource).
``admin_oid`` / ``sales_oid``
    Entra object ids of a seeded "Sam Admin" (System Administrator + ActiveCampaign Admin) and
    "Jane Doe" (Salesperson + ActiveCampaign User).
``browser``
    A headless Chromium (Playwright) per test module.
``signed_in_page(oid, url=None) -> playwright Page``
    A fresh browser context signed in to the web client as that user (cookie set through
    ``/_emulator/signin``), opened at ``url`` (default: the app shell). Its console errors are
    collected in ``page.console_errors``. Contexts are closed after the test.
``web_resource_frame(page) -> FrameLocator``
    The web resource iframe of the app shell (``#WebResource``).
``screenshot(page, name)``
    Saves ``/tmp/admin-screens/<name>.png`` (not committed; for looking at the pages).

Also re-exported from the integration conftest: ``dataverse``, ``activecampaign``,
``bridge_env``, ``bridge_settings``, ``start_workers``, ``connected``, ``wait_until``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration import conftest as _integration

# Fixtures re-exported from the integration conftest for browser tests.
AC_KEY = _integration.AC_KEY
CLIENT_ID = _integration.CLIENT_ID
activecampaign = _integration.activecampaign
bridge_env = _integration.bridge_env
bridge_settings = _integration.bridge_settings
connected = _integration.connected
dataverse = _integration.dataverse
start_workers = _integration.start_workers
wait_until = _integration.wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_DIR = Path("/tmp/admin-screens")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def bridge_server(bridge_env):
    """The bridge on a real local port, with ``BRIDGE_PUBLIC_URL`` known before it starts
    (so the webhooks it registers point at itself)."""
    from bridge.app import create_app
    from bridge.config import load_settings
    from bridge.runtime import set_runtime
    from emulators.server import serve_in_thread

    port = _free_port()
    bridge_env["BRIDGE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    app = create_app(load_settings(bridge_env))
    server = serve_in_thread(app, port=port)
    yield server
    server.stop()
    set_runtime(None)


@dataclass
class DevHost:
    dataverse: Any
    activecampaign: Any
    bridge_url: str
    env: dict[str, str]
    users: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self):
        from bridge.config import load_settings

        return load_settings(self.env)

    def add_user(self, name: str, roles: list[str]) -> str:
        oid = str(uuid.uuid4())
        self.dataverse.add_system_user(name, oid, roles=roles)
        self.users[name] = oid
        return oid

    def page_url(self, webresource: str, data: str | None = None) -> str:
        return self.dataverse.webclient_url(webresource, data)

    def record_url(self, entity: str, record_id: str) -> str:
        return (
            f"{self.dataverse.url}/main.aspx?pagetype=entityrecord&etn={entity}"
            f"&id={record_id.strip('{}').lower()}"
        )


@pytest.fixture
def dev_host(dataverse, activecampaign, bridge_server, bridge_env) -> DevHost:
    dataverse.bridge_client_id = CLIENT_ID
    dataverse.set_environment_variable("ac_BridgeBaseUrl", bridge_server.url)
    dataverse.set_environment_variable("ac_BridgeClientId", CLIENT_ID)
    return DevHost(dataverse, activecampaign, bridge_server.url, bridge_env)


@pytest.fixture
def admin_oid(dev_host) -> str:
    return dev_host.add_user("Sam Admin", ["System Administrator", "ActiveCampaign Admin"])


@pytest.fixture
def sales_oid(dev_host) -> str:
    return dev_host.add_user("Jane Doe", ["Salesperson", "ActiveCampaign User"])


@pytest.fixture(scope="module")
def browser():
    # Module-scoped, not session: Playwright's sync API runs an event loop in this thread, and
    # other tests (tests/solution) start their own sync Playwright after these modules.
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def signed_in_page(browser, dev_host) -> Iterator[Callable[..., Any]]:
    contexts = []

    def open_page(oid: str, url: str | None = None):
        context = browser.new_context(
            ignore_https_errors=True, viewport={"width": 1280, "height": 860}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        page.on(
            "console",
            lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        target = url or f"{dev_host.dataverse.url}/main.aspx"
        page.goto(dev_host.dataverse.signin_url(oid, target))
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def web_resource_frame() -> Callable[[Any], Any]:
    def frame(page):
        page.wait_for_selector("iframe#WebResource")
        return page.frame_locator("iframe#WebResource")

    return frame


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    def take(page, name: str) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
