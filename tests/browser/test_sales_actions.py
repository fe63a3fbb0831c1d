"""Sales actions in the emulated Dynamics web client: ribbon → dialog → bridge → RQ worker → AC.

Everything is real: the record form and its command bar (from the solution's RibbonDiff.xml,
enable rules evaluated by ribbon.js), Xrm.Navigation.navigateTo dialogs, the bridge over HTTP,
``rq worker`` processes on the ``actions`` queue, and both emulators. Screenshots of each dialog
go to /tmp/sales-screens/ (not committed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import sales_user  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

SCREENS = Path("/tmp/sales-screens")


def snap(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"))


def notes_on(client, record_id: str) -> list[str]:
    rows = client.query(
        "annotations", select=["subject"], filter=f"_objectid_value eq {record_id}"
    )
    return [row["subject"] for row in rows]


def test_add_to_automation_from_a_lead_form(
    dev_host, connected, sales_oid, signed_in_page, start_workers, sales_user  # noqa: F811
):
    start_workers(1, queues=("actions",))
    emu = dev_host.activecampaign
    welcome = emu.seed_automation("Welcome series")
    emu.seed_automation("Webinar follow-up")
    emu.seed_automation("Old nurture", status="2")
    lead = dev_host.dataverse.create_record(
        "lead", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
    )

    page = signed_in_page(sales_oid, dev_host.record_url("lead", lead))
    button = page.get_by_role("toolbar", name="Commands").get_by_role(
        "button", name="Add to Automation"
    )
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('#emu-commandbar button')]"
        ".find(b => b.textContent === 'Add to Automation'); return b && !b.disabled; }"
    )
    button.click()

    dialog = page.get_by_role("dialog", name="Add to Automation")
    frame = dialog.frame_locator("iframe")
    frame.locator("#target").filter(has_text="1 lead selected").wait_for()
    choices = frame.locator("#choices .ac-choice-name")
    choices.first.wait_for()
    # Active ones first, then by name; the inactive one is listed but cannot be picked.
    assert choices.all_inner_texts() == ["Webinar follow-up", "Welcome series", "Old nurture"]
    assert frame.get_by_role("radio").nth(2).is_disabled()
    snap(page, "add_to_automation_list")

    frame.locator("#search").fill("welc")
    assert choices.all_inner_texts() == ["Welcome series"]
    frame.get_by_text("Welcome series").click()
    frame.get_by_role("button", name="Add to automation").click()

    frame.locator("tr[data-status='done']").wait_for(timeout=20_000)
    frame.locator("#summary").filter(has_text="Finished: 1 of 1").wait_for()
    assert frame.locator(".ac-record-name").inner_text() == "Ada Lovelace"
    snap(page, "add_to_automation_done")

    assert emu.find_contact("ada@example.com")["automations"] == [welcome]
    # The form's timeline heard that the action finished and shows it without a refresh.
    page.frame_locator("iframe#WebResource_timeline").locator(".ac-item-text").filter(
        has_text="Entered automation 'Welcome series'"
    ).wait_for()
    assert notes_on(sales_user, lead) == [
        "ActiveCampaign: Added to automation 'Welcome series' by Jane Doe"
    ]
    dialog.get_by_role("button", name="Close").click()
    # (The emulated shell has no favicon: "Failed to load resource" 404s are not script errors.)
    script_errors = [e for e in page.console_errors if "Failed to load resource" not in e]
    assert not script_errors, script_errors


GRID_CONTROL_JS = """
(ids) => {
  // What Dynamics passes as SelectedControl for a home-page grid with these rows selected.
  const rows = ids.map(id => ({ getData: () => ({ getEntity: () => ({
    getId: () => "{" + id.toUpperCase() + "}", getEntityName: () => "contact" }) }) }));
  window.gridRefreshed = 0;
  const grid = {
    getGrid: () => ({ getSelectedRows: () => ({ forEach: cb => rows.forEach(cb),
                                                 getLength: () => rows.length }) }),
    getEntityName: () => "contact",
    refresh: () => { window.gridRefreshed += 1; }
  };
  window.dialogClosed = false;
  ActiveCampaignBridge.Ribbon.sendCampaign(grid, "contact").then(() => {
    window.dialogClosed = true; });
}
"""


def test_send_campaign_from_a_grid_with_three_rows(
    dev_host, connected, sales_oid, signed_in_page, start_workers, sales_user  # noqa: F811
):
    start_workers(1, queues=("actions",))
    emu = dev_host.activecampaign
    campaign = emu.seed_campaign("Spring newsletter", message_subject="What's new")
    emu.seed_campaign("Unfinished draft", status="0")
    contacts = [
        dev_host.dataverse.create_record(
            "contact",
            {"firstname": name, "lastname": "Test", "emailaddress1": f"{name.lower()}@example.com"},
        )
        for name in ("Ann", "Ben", "Cat")
    ]

    page = signed_in_page(sales_oid, dev_host.page_url("ac_/html/dashboard.html"))
    page.add_script_tag(url=f"{dev_host.dataverse.url}/WebResources/ac_/js/ribbon.js")
    page.evaluate(GRID_CONTROL_JS, contacts)

    dialog = page.get_by_role("dialog", name="Send Campaign")
    frame = dialog.frame_locator("iframe")
    frame.locator("#target").filter(has_text="3 contacts selected").wait_for()
    names = frame.locator("#choices .ac-choice-name")
    names.first.wait_for()
    assert names.all_inner_texts() == ["Spring newsletter"]  # drafts cannot be sent
    assert "Completed" in frame.locator(".ac-choice-meta").inner_text()
    assert "last sent" in frame.locator(".ac-choice-meta").inner_text()
    snap(page, "send_campaign_list")
    frame.get_by_text("Spring newsletter").click()
    confirm = frame.get_by_role("button", name="Send campaign")
    confirm.click()

    frame.locator("#summary").filter(has_text="Finished: 3 of 3").wait_for(timeout=25_000)
    assert frame.locator("tr[data-status='done']").count() == 3
    assert sorted(frame.locator(".ac-record-name").all_inner_texts()) == [
        "Ann Test", "Ben Test", "Cat Test",
    ]
    snap(page, "send_campaign_done")

    sends = [e for e in emu.request_log if e["path"] == "/admin/api.php"]
    assert len(sends) == 3
    for name in ("ann", "ben", "cat"):
        assert emu.find_contact(f"{name}@example.com")["sentcnt"] == 1
    with emu.store.lock:
        assert emu.store.campaigns[int(campaign)]["send_amt"] == 3
    for contact_id in contacts:
        assert notes_on(sales_user, contact_id) == [
            "ActiveCampaign: Sent campaign 'Spring newsletter' by Jane Doe"
        ]
    dialog.get_by_role("button", name="Close").click()
    page.wait_for_function("window.dialogClosed === true && window.gridRefreshed === 1")


def test_user_without_the_role_sees_why(dev_host, connected, signed_in_page):
    emu = dev_host.activecampaign
    emu.seed_automation("Welcome series")
    oid = dev_host.add_user("Sam Seller", ["Salesperson"])
    lead = dev_host.dataverse.create_record(
        "lead", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
    )
    page = signed_in_page(oid, dev_host.record_url("lead", lead))
    bar = page.get_by_role("toolbar", name="Commands")
    bar.get_by_role("button", name="Add to Automation").wait_for()
    # The enable rule (ribbon.js) keeps the commands off for someone without the role...
    page.wait_for_timeout(500)
    for label in ("Add to Automation", "Send Campaign", "Marketing activity"):
        assert bar.get_by_role("button", name=label).is_disabled()

    # ...and if the dialog is reached anyway (a stale page, a bookmarked link), the bridge
    # refuses and the dialog says why.
    page.evaluate(
        """(id) => { Xrm.Navigation.navigateTo({pageType: "webresource",
             webresourceName: "ac_/html/action_dialog.html",
             data: JSON.stringify({action: "addToAutomation", entity: "lead", ids: [id]})},
             {target: 2, title: "Add to Automation"}); }""",
        lead,
    )
    frame = page.get_by_role("dialog", name="Add to Automation").frame_locator("iframe")
    error = frame.get_by_role("alert")
    error.filter(has_text="ActiveCampaign User security role").wait_for()
    assert error.inner_text().startswith("You cannot run ActiveCampaign actions")
    assert frame.get_by_role("button", name="Add to automation").is_disabled()
    snap(page, "action_refused")
