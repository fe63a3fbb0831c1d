"""The emulated Dynamics web client hosts the web resources the way Dynamics does."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.browser


def test_web_resources_are_served_by_their_solution_name(dev_host):
    base = dev_host.dataverse.url
    ca = dev_host.dataverse.ca_bundle
    page = requests.get(f"{base}/WebResources/ac_/html/settings.html", verify=ca, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    script = requests.get(f"{base}/WebResources/ac_/js/bridge_client.js", verify=ca, timeout=10)
    assert script.headers["Content-Type"].startswith("application/javascript")
    for missing in ("ac_/html/nope.html", "ac_/../bridge/app.py", "other_/x.js"):
        answer = requests.get(f"{base}/WebResources/{missing}", verify=ca, timeout=10)
        assert answer.status_code == 404


def test_shell_gives_xrm_context_web_api_env_vars_and_bridge_tokens(
    dev_host, admin_oid, signed_in_page
):
    page = signed_in_page(admin_oid, dev_host.page_url("ac_/html/settings.html"))
    frame = page.frame_locator("iframe#WebResource")
    status = frame.locator("#bridge-status")
    status.filter(has_text=f"Bridge address: {dev_host.bridge_url}").wait_for()

    info = page.evaluate(
        """async (BRIDGE) => {
          const ctx = Xrm.Utility.getGlobalContext();
          const roles = [];
          ctx.userSettings.roles.forEach(r => roles.push(r.name));
          const users = await Xrm.WebApi.retrieveMultipleRecords(
            "systemuser", "?$select=fullname&$filter=contains(fullname,'Sam')");
          const created = await Xrm.WebApi.createRecord(
            "lead", {lastname: "Shell", firstname: "Xrm"});
          const lead = await Xrm.WebApi.retrieveRecord("lead", created.id, "?$select=fullname");
          const token = await window.ActiveCampaignBridgeHost.getToken();
          const me = await fetch(BRIDGE + "/api/v1/me", {
            headers: {Authorization: "Bearer " + token, "X-Dynamics-Org-Url": ctx.getClientUrl()}});
          return {url: ctx.getClientUrl(), user: ctx.userSettings.userName,
                  userId: ctx.userSettings.userId, roles,
                  found: users.entities.map(u => u.fullname), lead: lead.fullname,
                  meStatus: me.status, me: await me.json()};
        }""",
        dev_host.bridge_url,
    )
    assert info["url"] == dev_host.dataverse.url
    assert info["user"] == "Sam Admin" and info["userId"].startswith("{")
    assert "ActiveCampaign Admin" in info["roles"]
    assert info["found"] == ["Sam Admin"]
    assert info["lead"] == "Xrm Shell"
    # Not connected yet: the bridge knows the person but not the org.
    assert info["meStatus"] == 200, info["me"]
    assert info["me"]["name"] == "Sam Admin" and info["me"]["connected"] is False


def test_navigate_to_opens_a_dialog_that_resolves_on_close(dev_host, admin_oid, signed_in_page):
    page = signed_in_page(admin_oid, dev_host.page_url("ac_/html/dashboard.html"))
    page.evaluate(
        """() => { window.dialogDone = false; Xrm.Navigation.navigateTo(
             {pageType: "webresource", webresourceName: "ac_/html/timeline.html",
              data: JSON.stringify({entity: "lead", id: "abc"})},
             {target: 2, width: 500, height: 400, title: "Timeline"})
             .then(() => { window.dialogDone = true; }); }"""
    )
    dialog = page.get_by_role("dialog", name="Timeline")
    dialog.frame_locator("iframe").locator("#target").filter(has_text="lead abc").wait_for()
    dialog.get_by_role("button", name="Close").click()
    page.wait_for_function("window.dialogDone === true")


def test_record_form_has_the_solution_command_bar_and_timeline(
    dev_host, sales_oid, signed_in_page
):
    lead = dev_host.dataverse.create_record(
        "lead", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
    )
    page = signed_in_page(sales_oid, dev_host.record_url("lead", lead))
    bar = page.get_by_role("toolbar", name="Commands")
    for label in ("Add to Automation", "Send Campaign", "Marketing activity"):
        button = bar.get_by_role("button", name=label)
        button.wait_for()
    # The ActiveCampaign User role enables the buttons (ribbon.js custom rule).
    page.wait_for_function(
        "!document.querySelector('#emu-commandbar button').disabled", timeout=10_000
    )
    timeline = page.frame_locator("iframe#WebResource_timeline")
    timeline.locator("#target").filter(has_text=lead).wait_for()


def test_unsigned_visitor_is_sent_to_sign_in(dev_host, browser, admin_oid):
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(dev_host.page_url("ac_/html/settings.html"))
        assert "/_emulator/signin" in page.url
        page.get_by_role("link", name="Sam Admin").click()
        page.wait_for_selector("iframe#WebResource")
        assert "settings.html" in page.url
    finally:
        context.close()
