"""The real-time push applies the table switch, the criteria and custom field mappings."""

from __future__ import annotations

from sqlalchemy import select

from bridge.models import EntityConfig, LinkStatus, RecordLink
from workers.sync import Outcome, push_record


def configure(runtime, connection_id, entity="lead", **values) -> None:
    with runtime.db.session() as session:
        config = session.scalar(
            select(EntityConfig).where(
                EntityConfig.connection_id == connection_id, EntityConfig.entity == entity
            )
        )
        if config is None:
            config = EntityConfig(connection_id=connection_id, entity=entity)
            session.add(config)
        for name, value in values.items():
            setattr(config, name, value)


def link_of(runtime, record_id):
    with runtime.db.session() as session:
        return session.scalar(select(RecordLink).where(RecordLink.dynamics_id == record_id))


def test_custom_fields_are_converted_and_sent(
    runtime, connection_id, sales_user, activecampaign, dataverse
):
    industry = activecampaign.seed_field("Industry", "text")
    score = activecampaign.seed_field("Lead score", "number")
    quality = activecampaign.seed_field("Quality", "dropdown", options=["Hot", "Warm", "Cold"])
    no_email = activecampaign.seed_field("No mass email", "checkbox", options=["true"])
    revenue = activecampaign.seed_field("Revenue", "text")
    account = activecampaign.seed_field("Company", "text")
    configure(runtime, connection_id, field_mappings=[
        {"ac_field": "firstName", "dynamics_column": "firstname"},
        {"ac_field": "lastName", "dynamics_column": "lastname"},
        {"ac_field": industry, "dynamics_column": "ac_industry"},
        {"ac_field": score, "dynamics_column": "ac_leadscore"},
        {"ac_field": quality, "dynamics_column": "leadqualitycode",
         "option_map": {"1": "Hot", "2": "Warm", "3": "Cold"}},
        {"ac_field": no_email, "dynamics_column": "donotbulkemail"},
        {"ac_field": revenue, "dynamics_column": "revenue", "direction": "to_activecampaign"},
        {"ac_field": account, "dynamics_column": "parentaccountid"},
    ])
    account_id = sales_user.create("accounts", {"name": "Contoso"})
    lead_id = sales_user.create("leads", {
        "firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com",
        "telephone1": "not mapped", "ac_industry": "Software", "ac_leadscore": 42,
        "leadqualitycode": 1, "donotbulkemail": True, "revenue": 1500.5,
        "parentaccountid@odata.bind": f"/accounts({account_id})",
    })

    assert push_record(runtime, connection_id, "lead", lead_id).outcome == Outcome.SYNCED

    contact = activecampaign.find_contact("ada@example.com")
    assert contact["phone"] in ("", None)  # phone is not in the configured mapping
    assert contact["fields"] == {
        industry: "Software", score: "42", quality: "Hot", no_email: "||true||",
        revenue: "1500.5", account: "Contoso",
    }
    link = link_of(runtime, lead_id)
    assert (link.status, link.last_error) == (LinkStatus.SYNCED, None)

    # An option without a mapped value is reported on the record, not sent.
    sales_user.update("leads", lead_id, {"leadqualitycode": 2, "ac_leadscore": 43})
    configure(runtime, connection_id, field_mappings=[
        {"ac_field": quality, "dynamics_column": "leadqualitycode", "option_map": {"1": "Hot"}},
        {"ac_field": score, "dynamics_column": "ac_leadscore"},
    ])
    assert push_record(runtime, connection_id, "lead", lead_id).outcome == Outcome.SYNCED
    contact = activecampaign.find_contact("ada@example.com")
    assert (contact["fields"][quality], contact["fields"][score]) == ("Hot", "43")
    link = link_of(runtime, lead_id)
    assert link.status == LinkStatus.SYNCED
    assert link.last_error == (
        "leadqualitycode: option 2 of leadqualitycode has no ActiveCampaign value mapped"
    )


def test_criteria_and_the_table_switch_decide_what_is_pushed(
    runtime, connection_id, sales_user, activecampaign
):
    configure(runtime, connection_id, mode="criteria",
              criteria=[{"field": "companyname", "operator": "contains", "value": "contoso"}])
    outside = sales_user.create(
        "leads", {"lastname": "Out", "emailaddress1": "out@example.com", "companyname": "Fabrikam"}
    )
    inside = sales_user.create(
        "leads", {"lastname": "In", "emailaddress1": "in@example.com", "companyname": "Contoso"}
    )
    activecampaign.reset_log()

    excluded = push_record(runtime, connection_id, "lead", outside)
    assert excluded.outcome == Outcome.EXCLUDED
    assert excluded.error == "does not meet the sync criteria (companyname contains 'contoso')"
    assert activecampaign.request_log == []
    assert link_of(runtime, outside).status == LinkStatus.EXCLUDED

    assert push_record(runtime, connection_id, "lead", inside).outcome == Outcome.SYNCED
    assert [c["email"] for c in activecampaign.contacts()] == ["in@example.com"]

    # The record comes to meet the criteria: the next change pushes it.
    sales_user.update("leads", outside, {"companyname": "Contoso West"})
    assert push_record(runtime, connection_id, "lead", outside).outcome == Outcome.SYNCED

    configure(runtime, connection_id, enabled=False)
    sales_user.update("leads", inside, {"firstname": "Changed"})
    off = push_record(runtime, connection_id, "lead", inside)
    assert (off.outcome, off.error) == (Outcome.EXCLUDED, "lead sync is turned off")
    assert activecampaign.find_contact("in@example.com")["firstName"] in ("", None)


def test_invalid_stored_configuration_is_a_readable_failure(runtime, connection_id, sales_user):
    configure(runtime, connection_id, mode="criteria",
              criteria=[{"field": "companyname", "operator": "resembles", "value": "x"}])
    lead_id = sales_user.create("leads", {"lastname": "X", "emailaddress1": "x@example.com"})
    result = push_record(runtime, connection_id, "lead", lead_id)
    assert result.outcome == Outcome.FAILING
    assert result.error.startswith("the lead sync configuration is invalid: unknown operator")
