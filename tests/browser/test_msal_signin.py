"""Sign-in as in real Dynamics: MSAL.js, not the dev host's token provider.

The emulated web client normally hands pages a bridge token through
``window.ActiveCampaignBridgeHost``; ``tokenhost=0`` on the app shell leaves it out, so the page
signs in with the vendored MSAL.js (``ac_/js/vendor/msal-browser.min.js``) exactly as it would
inside Dynamics 365. The machine has no internet and Entra ID must never be reached: every
request to ``login.microsoftonline.com`` (and anything else off this machine) is recorded and
aborted by the browser context's routes, which stand for "Entra ID cannot be reached".
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.conftest import CLIENT_ID

pytestmark = pytest.mark.browser

HTML_DIR = Path(__file__).resolve().parents[2] / "webresources" / "html"
REDIRECT_PAGE = "signin.html"
# Every page that calls the bridge loads MSAL.js; signin.html is the redirect page only.
PAGES = sorted(p.name for p in HTML_DIR.glob("*.html") if p.name != REDIRECT_PAGE)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _offline_context(browser):
    """A context whose requests to Entra ID (or any other remote host) are recorded and aborted."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    entra: list[str] = []
    remote: list[str] = []

    def to_entra(route):
        entra.append(route.request.url)
        route.abort("internetdisconnected")

    def anything_else(route):
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("http://", "https://")) and host not in LOCAL_HOSTS:
            remote.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    # Routes added later take precedence: Entra's handler wins for its host.
    context.route("**/*", anything_else)
    context.route("https://login.microsoftonline.com/**", to_entra)
    return context, entra, remote


def test_every_page_loads_msal(browser, dev_host):
    assert "settings.html" in PAGES and "timeline.html" in PAGES
    context, entra, remote = _offline_context(browser)
    try:
        page = context.new_page()
        for name in PAGES:
            page.goto(f"{dev_host.dataverse.url}/WebResources/ac_/html/{name}")
            kinds = page.evaluate(
                "[typeof window.msal, typeof (window.msal && window.msal.PublicClientApplication),"
                " typeof window.ActiveCampaignBridge.auth.getToken]"
            )
            assert kinds == ["object", "function", "function"], name
        page.goto(f"{dev_host.dataverse.url}/WebResources/ac_/html/{REDIRECT_PAGE}")
        assert page.evaluate(
            "typeof (window.msalRedirectBridge && "
            "window.msalRedirectBridge.broadcastResponseToMainFrame)"
        ) == "function"
        # Opened without an Entra answer, the redirect page says sign-in could not finish.
        page.locator("#signin-message").filter(has_text="could not finish").wait_for()
    finally:
        context.close()
    assert remote == []


def test_signs_in_with_msal_and_explains_when_entra_is_unreachable(browser, dev_host, admin_oid):
    context, entra, remote = _offline_context(browser)
    try:
        page = context.new_page()
        page.goto(
            dev_host.dataverse.signin_url(
                admin_oid, dev_host.page_url("ac_/html/settings.html") + "&tokenhost=0"
            )
        )
        frame = page.frame_locator("iframe#WebResource")
        message = frame.locator("#page-message")
        # MSAL's silent iframe waits up to 10 s for an answer that never comes.
        message.filter(has_text="Could not sign you in").wait_for(timeout=30_000)
        text = message.inner_text()
        assert "ActiveCampaign bridge" in text
        assert "login.microsoftonline.com" in text, text
        assert "MSAL.js is not loaded" not in text
        assert message.get_attribute("role") == "alert"

        # The dev host's token provider really was absent: this was MSAL.js.
        assert page.evaluate("typeof window.ActiveCampaignBridgeHost") == "undefined"
        web_resource = page.frame(name="WebResource")
        assert web_resource.evaluate("typeof window.msal.PublicClientApplication") == "function"
    finally:
        context.close()

    authorize = [u for u in entra if "/oauth2/v2.0/authorize" in urlsplit(u).path]
    assert authorize, f"no sign-in request to Entra ID; saw {entra}"
    url = urlsplit(authorize[0])
    assert url.path == "/organizations/oauth2/v2.0/authorize"
    query = parse_qs(url.query)
    assert query["client_id"] == [CLIENT_ID]
    assert f"api://{CLIENT_ID}/access_as_user" in query["scope"][0].split()
    assert query["login_hint"] == ["Sam Admin"]
    assert query["redirect_uri"] == [
        f"{dev_host.dataverse.url}/WebResources/ac_/html/{REDIRECT_PAGE}"
    ]
    assert query["prompt"] == ["none"]  # ssoSilent: no interaction in the hidden iframe
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert remote == []
