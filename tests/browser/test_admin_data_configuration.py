"""Data Configuration in the emulated web client: criteria, custom and option-set mappings,
save and reload, and every validation error shown on the page."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from bridge.models import EntityConfig
from bridge.runtime import Runtime
from tests.browser.conftest import AC_KEY

pytestmark = pytest.mark.browser

PAGE = "ac_/html/data_configuration.html"


def _seed_fields(activecampaign) -> tuple[str, str]:
    region = activecampaign.seed_field("Region", "dropdown", options=["NA", "EU", "APAC"])
    industry = activecampaign.seed_field("Industry", "text")
    return region, industry


def _open(page_factory, dev_host, oid, web_resource_frame):
    page = page_factory(oid, dev_host.page_url(PAGE))
    frame = web_resource_frame(page)
    leads = frame.locator("#entity-lead")
    leads.get_by_role("table", name="Leads field mapping").wait_for()
    return page, frame, leads


def _save(frame, leads):
    leads.get_by_role("button", name="Save leads changes").click()


def test_criteria_and_mappings_are_saved_and_reloaded(
    dev_host, connected, admin_oid, signed_in_page, web_resource_frame, screenshot
):
    _seed_fields(dev_host.activecampaign)
    page, frame, leads = _open(signed_in_page, dev_host, admin_oid, web_resource_frame)
    assert leads.get_by_role("switch", name="Sync leads").is_checked()
    # Standard fields come pre-mapped.
    rows = leads.locator("tr[data-mapping]")
    expect(rows).to_have_count(4)
    assert leads.get_by_label("Last name Dynamics column").input_value() == "lastname"

    # Criteria: Region equals Europe, and Company Name contains Acme.
    leads.get_by_label("Only leads matching criteria").check()
    leads.get_by_role("button", name="Add criterion").click()
    leads.get_by_label("Criterion 1 field").select_option("ac_region")
    assert "contains" not in leads.get_by_label("Criterion 1 operator").inner_text()
    leads.get_by_label("Criterion 1 value").select_option(label="Europe")
    leads.get_by_role("button", name="Add criterion").click()
    leads.get_by_label("Criterion 2 field").select_option("companyname")
    leads.get_by_label("Criterion 2 operator").select_option("contains")
    leads.get_by_label("Criterion 2 value").fill("Acme")
    leads.get_by_role("button", name="Add criterion").click()
    leads.get_by_label("Criterion 3 field").select_option("jobtitle")
    leads.get_by_role("button", name="Remove criterion 3").click()
    expect(leads.get_by_label("Criterion 3 field")).to_have_count(0)

    # Edit → pick the custom fields → Add → choose compatible custom columns.
    leads.get_by_role("button", name="Edit leads mapping").click()
    leads.get_by_label("Region (dropdown)").check()
    leads.get_by_label("Industry (text)").check()
    leads.get_by_role("button", name="Add", exact=True).click()
    region_column = leads.get_by_label("Region Dynamics column")
    offered = region_column.locator("option").all_inner_texts()
    assert "Region (ac_region)" in offered and not any("(jobtitle)" in o for o in offered)
    region_column.select_option("ac_region")
    for dynamics, ac in (("North America", "NA"), ("Europe", "EU"), ("Asia Pacific", "APAC")):
        leads.get_by_label(f"Region option for {dynamics}").select_option(ac)
    leads.get_by_label("Industry Dynamics column").select_option("ac_industry")
    leads.get_by_label("Industry direction").select_option("to_activecampaign")
    screenshot(page, "data-configuration-editing")
    _save(frame, leads)
    frame.locator("#page-message").filter(has_text="Leads configuration saved").wait_for()

    page.reload()
    frame = web_resource_frame(page)
    leads = frame.locator("#entity-lead")
    leads.get_by_role("table", name="Leads field mapping").wait_for()
    assert leads.get_by_label("Only leads matching criteria").is_checked()
    assert leads.get_by_label("Criterion 1 field").input_value() == "ac_region"
    assert leads.get_by_label("Criterion 1 value").input_value() == "100010001"
    assert leads.get_by_label("Criterion 2 value").input_value() == "Acme"
    assert leads.get_by_label("Region Dynamics column").input_value() == "ac_region"
    assert leads.get_by_label("Region option for Europe").input_value() == "EU"
    assert leads.get_by_label("Industry direction").input_value() == "to_activecampaign"
    # Contacts are untouched; switching them off is saved too.
    contacts = frame.locator("#entity-contact")
    contacts.get_by_role("switch", name="Sync contacts").uncheck()
    contacts.get_by_role("button", name="Save contacts changes").click()
    frame.locator("#page-message").filter(has_text="Contacts configuration saved").wait_for()
    screenshot(page, "data-configuration")
    runtime = Runtime(dev_host.settings)
    with runtime.db.session() as session:
        lead = session.query(EntityConfig).filter_by(entity="lead").one()
        assert lead.criteria[0] == {"field": "ac_region", "operator": "eq", "value": 100010001}
        by_column = {m["dynamics_column"]: m for m in lead.field_mappings}
        assert by_column["ac_region"]["option_map"] == {
            "100010000": "NA", "100010001": "EU", "100010002": "APAC"
        }
        assert session.query(EntityConfig).filter_by(entity="contact").one().enabled is False
    runtime.db.engine.dispose()
    assert not [e for e in page.console_errors if "Failed to load resource" not in e]


def _row_error(leads, text):
    leads.locator(".ac-field-error").filter(has_text=text).wait_for()


def test_each_validation_error_is_shown_on_the_page(
    dev_host, connected, admin_oid, signed_in_page, web_resource_frame, screenshot
):
    region, industry = _seed_fields(dev_host.activecampaign)
    page, frame, leads = _open(signed_in_page, dev_host, admin_oid, web_resource_frame)

    # A required Dynamics column left unmapped.
    leads.get_by_role("button", name="Remove Last name").click()
    _save(frame, leads)
    _row_error(leads, "(lastname) is required in Dynamics")
    frame.locator("#page-message").filter(has_text="see the marked rows").wait_for()
    screenshot(page, "data-configuration-errors")

    # A duplicate target: two fields written to the same column.
    page.reload()
    frame = web_resource_frame(page)
    leads = frame.locator("#entity-lead")
    leads.get_by_role("button", name="Edit leads mapping").click()
    leads.get_by_label("Region (dropdown)").check()
    leads.get_by_label("Industry (text)").check()
    leads.get_by_role("button", name="Add", exact=True).click()
    leads.get_by_label("Industry Dynamics column").select_option("ac_industry")
    leads.get_by_label("Region Dynamics column").select_option("ac_industry")
    _save(frame, leads)
    _row_error(leads, "Duplicate target")

    # Save a good mapping, then ActiveCampaign changes the field's type: a type mismatch.
    leads.get_by_label("Region Dynamics column").select_option("ac_region")
    for dynamics, ac in (("North America", "NA"), ("Europe", "EU"), ("Asia Pacific", "APAC")):
        leads.get_by_label(f"Region option for {dynamics}").select_option(ac)
    _save(frame, leads)
    frame.locator("#page-message").filter(has_text="Leads configuration saved").wait_for()
    changed = requests.put(
        f"{dev_host.activecampaign.url}/api/3/fields/{industry}",
        json={"field": {"type": "date"}},
        headers={"Api-Token": AC_KEY},
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    _save(frame, leads)
    _row_error(leads, "Type mismatch")

    # A custom field mapped to a standard column (a configuration saved by an older version).
    runtime = Runtime(dev_host.settings)
    with runtime.db.session() as session:
        config = session.query(EntityConfig).filter_by(entity="lead").one()
        config.field_mappings = [
            *config.field_mappings[:4],
            {"ac_field": region, "dynamics_column": "jobtitle", "direction": "both",
             "option_map": {}},
        ]
    runtime.db.engine.dispose()
    page.reload()
    frame = web_resource_frame(page)
    leads = frame.locator("#entity-lead")
    leads.get_by_role("table", name="Leads field mapping").wait_for()
    _save(frame, leads)
    _row_error(leads, "map it to a custom Dynamics column")
