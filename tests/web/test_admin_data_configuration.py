"""Data Configuration API: field metadata, compatibility, validation, save and reload."""

from __future__ import annotations

from bridge.fieldmap import schema_cache_key
from bridge.models import EntityConfig

PATH = "/api/v1/admin/data-configuration"
STANDARD = [
    {"ac_field": "email", "dynamics_column": "emailaddress1", "direction": "both"},
    {"ac_field": "firstName", "dynamics_column": "firstname", "direction": "both"},
    {"ac_field": "lastName", "dynamics_column": "lastname", "direction": "both"},
    {"ac_field": "phone", "dynamics_column": "telephone1", "direction": "both"},
]


def _connected(admin_api):
    oid = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(oid).status_code == 200
    ac = admin_api.activecampaign
    region = ac.seed_field("Region", "dropdown", options=["NA", "EU", "APAC"])
    industry = ac.seed_field("Industry", "text")
    birthday = ac.seed_field("Birthday", "date")
    return oid, region, industry, birthday


def test_field_metadata_and_compatibility(admin_api):
    oid, region, industry, birthday = _connected(admin_api)
    response = admin_api.call("GET", f"{PATH}/lead/fields", oid)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    columns = {c["name"]: c for c in body["dynamics"]}
    assert columns["lastname"]["required"] is True and columns["lastname"]["custom"] is False
    assert columns["ac_region"]["custom"] is True and columns["ac_region"]["type"] == "Picklist"
    assert [o["label"] for o in columns["ac_region"]["options"]] == [
        "North America", "Europe", "Asia Pacific"
    ]
    assert "ac_activecampaigncontactid" not in columns  # the bridge's own columns
    fields = {f["id"]: f for f in body["activecampaign"]}
    assert fields["email"]["standard"] is True
    assert [o["value"] for o in fields[region]["options"]] == ["NA", "EU", "APAC"]
    # Custom to custom only, and only compatible types.
    assert set(body["compatibility"][region]) == {"ac_industry", "ac_leadscore", "ac_region"}
    assert set(body["compatibility"][industry]) == {"ac_industry", "ac_leadscore", "ac_region"}
    assert body["compatibility"][birthday] == []
    assert "firstname" in body["compatibility"]["firstName"]
    assert body["operators"]["ac_region"] == ["eq", "ne", "is_empty", "is_not_empty"]
    assert "contains" in body["operators"]["companyname"]
    assert body["standard_mappings"][0]["ac_field"] == "email"


def test_defaults_then_save_and_reload(admin_api):
    oid, region, industry, _ = _connected(admin_api)
    default = admin_api.call("GET", f"{PATH}/contact", oid).get_json()
    assert default["enabled"] is True and default["mode"] == "all"
    assert [m["ac_field"] for m in default["field_mappings"]] == [
        "email", "firstName", "lastName", "phone"
    ]
    # The sync engine's schema cache is dropped on save.
    admin_api.runtime.redis.set(schema_cache_key(1, "lead"), "{}")
    config = {
        "enabled": True,
        "mode": "criteria",
        "criteria": [
            {"field": "ac_region", "operator": "eq", "value": "100010001"},
            {"field": "companyname", "operator": "contains", "value": "Acme"},
            {"field": "emailaddress1", "operator": "is_not_empty", "value": None},
        ],
        "field_mappings": [
            *STANDARD,
            {"ac_field": region, "dynamics_column": "ac_region", "direction": "both",
             "option_map": {"100010000": "NA", "100010001": "EU", "100010002": "APAC"}},
            {"ac_field": industry, "dynamics_column": "ac_industry",
             "direction": "to_activecampaign"},
        ],
    }
    saved = admin_api.call("PUT", f"{PATH}/lead", oid, json=config)
    assert saved.status_code == 200, saved.get_json()
    assert admin_api.runtime.redis.get(schema_cache_key(1, "lead")) is None
    again = admin_api.call("GET", f"{PATH}/lead", oid).get_json()
    assert again["mode"] == "criteria"
    assert again["criteria"][0] == {"field": "ac_region", "operator": "eq", "value": 100010001}
    assert again["field_mappings"][4]["option_map"]["100010001"] == "EU"
    assert again["field_mappings"][5]["direction"] == "to_activecampaign"
    with admin_api.runtime.db.session() as session:
        row = session.query(EntityConfig).filter_by(entity="lead").one()
        assert row.enabled and len(row.field_mappings) == 6

    off = admin_api.call("PUT", f"{PATH}/lead", oid, json={**config, "enabled": False})
    assert off.get_json()["enabled"] is False


def _errors(admin_api, oid, **changes):
    config = {"enabled": True, "mode": "all", "criteria": [], "field_mappings": list(STANDARD)}
    config.update(changes)
    response = admin_api.call("PUT", f"{PATH}/lead", oid, json=config)
    assert response.status_code == 400, response.get_json()
    return response.get_json()["error"]["fields"]


def test_each_validation_error_names_its_row(admin_api):
    oid, region, industry, birthday = _connected(admin_api)
    # A required Dynamics column left unmapped.
    fields = _errors(
        admin_api, oid, field_mappings=[m for m in STANDARD if m["ac_field"] != "lastName"]
    )
    assert "(lastname) is required in Dynamics" in fields["field_mappings"]["_schema"][0]
    # A type mismatch.
    fields = _errors(admin_api, oid, field_mappings=[
        *STANDARD, {"ac_field": birthday, "dynamics_column": "ac_industry"}])
    assert "Type mismatch" in fields["field_mappings"]["4"]["dynamics_column"][0]
    # A custom field mapped to a standard column.
    fields = _errors(admin_api, oid, field_mappings=[
        *STANDARD, {"ac_field": industry, "dynamics_column": "jobtitle"}])
    assert "custom Dynamics column" in fields["field_mappings"]["4"]["dynamics_column"][0]
    # A duplicate target.
    fields = _errors(admin_api, oid, field_mappings=[
        *STANDARD, {"ac_field": industry, "dynamics_column": "ac_industry"},
        {"ac_field": region, "dynamics_column": "ac_industry"}])
    assert "Duplicate target" in " ".join(fields["field_mappings"]["5"]["dynamics_column"])
    # An option that does not exist on either side; a choice without its options mapped.
    fields = _errors(admin_api, oid, field_mappings=[
        *STANDARD, {"ac_field": region, "dynamics_column": "ac_region",
                    "option_map": {"100010000": "Mars"}}])
    assert "not an option" in fields["field_mappings"]["4"]["option_map"][0]
    fields = _errors(admin_api, oid, field_mappings=[
        *STANDARD, {"ac_field": region, "dynamics_column": "ac_region"}])
    assert "Map the options" in fields["field_mappings"]["4"]["option_map"][0]
    # Email cannot be unmapped.
    fields = _errors(admin_api, oid, field_mappings=STANDARD[1:])
    assert any("Email" in m for m in fields["field_mappings"]["_schema"])
    # Criteria: an operator that does not suit the type, a bad value, an unknown column.
    fields = _errors(admin_api, oid, mode="criteria", criteria=[
        {"field": "ac_region", "operator": "contains", "value": "x"},
        {"field": "numberofemployees", "operator": "gt", "value": "many"},
        {"field": "nosuchcolumn", "operator": "eq", "value": "x"},
        {"field": "createdon", "operator": "on", "value": "31/01/2024"},
        {"field": "ac_region", "operator": "eq", "value": "42"},
    ])
    assert "operator" in fields["criteria"]["0"]
    assert "number" in fields["criteria"]["1"]["value"][0]
    assert "field" in fields["criteria"]["2"]
    assert "3" in fields["criteria"]
    assert "not an option" in fields["criteria"]["4"]["value"][0]
    fields = _errors(admin_api, oid, mode="criteria", criteria=[])
    assert "at least one" in fields["criteria"]["_schema"][0]


def test_malformed_payloads_and_roles(admin_api):
    oid, *_ = _connected(admin_api)
    for payload, field in (
        ({"mode": "all", "criteria": [], "field_mappings": []}, "enabled"),
        ({"enabled": True, "mode": "some", "criteria": [], "field_mappings": []}, "mode"),
        ({"enabled": True, "mode": "all", "criteria": [{"field": "x", "operator": "like"}],
          "field_mappings": []}, "criteria"),
        ({"enabled": True, "mode": "all", "criteria": [],
          "field_mappings": [{"ac_field": "email", "dynamics_column": "emailaddress1",
                              "direction": "sideways"}]}, "field_mappings"),
    ):
        response = admin_api.call("PUT", f"{PATH}/lead", oid, json=payload)
        assert response.status_code == 400, payload
        assert field in response.get_json()["error"]["fields"]
    assert admin_api.call("GET", f"{PATH}/account", oid).status_code == 404
    sales = admin_api.user(["Salesperson", "ActiveCampaign User"], name="Jane Doe")
    assert admin_api.call("GET", f"{PATH}/lead", sales).status_code == 403
    assert admin_api.call("GET", f"{PATH}/lead/fields").status_code == 401
