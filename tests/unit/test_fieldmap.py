"""The mapping engine: conversions both ways, problems reported, one hash per row."""

from __future__ import annotations

import pytest

from bridge.fieldmap import (
    AcFieldInfo,
    ColumnInfo,
    Mapper,
    MappingError,
    Schema,
    parse_mappings,
)
from bridge.mapping import payload_hash, to_activecampaign

SCHEMA = Schema(
    columns={
        "ac_industry": ColumnInfo("ac_industry", "String", 10),
        "description": ColumnInfo("description", "Memo", 2000),
        "ac_leadscore": ColumnInfo("ac_leadscore", "Integer"),
        "revenue": ColumnInfo("revenue", "Money"),
        "donotemail": ColumnInfo("donotemail", "Boolean"),
        "leadqualitycode": ColumnInfo("leadqualitycode", "Picklist"),
        "interests": ColumnInfo("interests", "MultiSelectPicklist"),
        "ac_lastsyncedon": ColumnInfo("ac_lastsyncedon", "DateTime"),
        "birthday": ColumnInfo("birthday", "DateTime"),
        "parentaccountid": ColumnInfo("parentaccountid", "Lookup"),
        "firstname": ColumnInfo("firstname", "String", 50),
        "emailaddress1": ColumnInfo("emailaddress1", "String", 100),
    },
    ac_fields={
        "1": AcFieldInfo("1", "text"),
        "2": AcFieldInfo("2", "textarea"),
        "3": AcFieldInfo("3", "number"),
        "4": AcFieldInfo("4", "text"),
        "5": AcFieldInfo("5", "checkbox"),
        "6": AcFieldInfo("6", "dropdown"),
        "7": AcFieldInfo("7", "listbox"),
        "8": AcFieldInfo("8", "datetime"),
        "9": AcFieldInfo("9", "date"),
        "10": AcFieldInfo("10", "text"),
        "11": AcFieldInfo("11", "date"),
    },
)
MAPPINGS = [
    {"ac_field": "firstName", "dynamics_column": "firstname"},
    {"ac_field": "1", "dynamics_column": "ac_industry"},
    {"ac_field": "2", "dynamics_column": "description"},
    {"ac_field": "3", "dynamics_column": "ac_leadscore"},
    {"ac_field": "4", "dynamics_column": "revenue", "direction": "to_activecampaign"},
    {"ac_field": "5", "dynamics_column": "donotemail"},
    {"ac_field": "6", "dynamics_column": "leadqualitycode",
     "option_map": {"1": "Hot", "2": "Warm", "3": "Cold"}},
    {"ac_field": "7", "dynamics_column": "interests",
     "option_map": {"100": "Email", "200": "SMS"}},
    {"ac_field": "8", "dynamics_column": "ac_lastsyncedon"},
    {"ac_field": "9", "dynamics_column": "birthday"},
    {"ac_field": "10", "dynamics_column": "parentaccountid"},
]
ROW = {
    "leadid": "a",
    "emailaddress1": " Ada@Example.COM",
    "firstname": "Ada",
    "ac_industry": "Software",
    "description": "line one\nline two",
    "ac_leadscore": 42,
    "revenue": 1500.0,
    "donotemail": True,
    "leadqualitycode": 1,
    "interests": "100,200",
    "ac_lastsyncedon": "2024-03-01T23:30:00Z",
    "birthday": "1815-12-10",
    "_parentaccountid_value": "0f0e0d0c-0000-0000-0000-000000000001",
    "_parentaccountid_value@OData.Community.Display.V1.FormattedValue": "Contoso",
}


def mapper() -> Mapper:
    return Mapper.from_config("lead", MAPPINGS, SCHEMA)


def test_dynamics_to_activecampaign_converts_every_type():
    mapped = mapper().to_activecampaign(ROW)
    assert mapped.problems == ()
    payload = mapped.payload
    assert payload.email == "ada@example.com"  # email stays mapped although not configured
    assert payload.first_name == "Ada"
    assert payload.field_values == {
        "1": "Software",
        "2": "line one\nline two",
        "3": "42",
        "4": "1500",
        "5": "||true||",
        "6": "Hot",
        "7": "||Email||SMS||",
        "8": "2024-03-01T23:30:00+00:00",
        "9": "1815-12-10",
        "10": "Contoso",
    }
    assert "_parentaccountid_value" in mapper().select


def test_datetime_into_a_date_field_is_its_utc_day():
    m = Mapper.from_config(
        "lead", [{"ac_field": "11", "dynamics_column": "ac_lastsyncedon"}], SCHEMA
    )
    assert m.to_activecampaign(ROW).payload.field_values == {"11": "2024-03-01"}


def test_empty_values_clear_custom_fields_and_unchecked_box_is_empty():
    row = {"emailaddress1": "a@example.com", "donotemail": False}
    values = mapper().to_activecampaign(row).payload.field_values
    assert values["5"] == "" and values["1"] == "" and values["7"] == ""


def test_unmapped_option_is_a_problem_not_a_silent_value():
    mapped = mapper().to_activecampaign({**ROW, "leadqualitycode": 9})
    assert mapped.problems == ("leadqualitycode: option 9 of leadqualitycode has no "
                               "ActiveCampaign value mapped",)
    assert "6" not in mapped.payload.field_values


def test_activecampaign_to_dynamics_converts_back():
    contact = {"email": "ADA@example.com", "firstName": "Ada"}
    values = {"1": "Retail", "2": "memo", "3": "7", "4": "99.5", "5": "||true||", "6": "Cold",
              "7": "||SMS||Email||", "8": "2024-05-19T02:45:00-05:00", "9": "2000-01-02",
              "10": "Fabrikam"}
    change = mapper().to_dynamics(contact, values)
    assert change.problems == ()
    assert change.body == {
        "emailaddress1": "ada@example.com",
        "firstname": "Ada",
        "ac_industry": "Retail",
        "description": "memo",
        "ac_leadscore": 7,
        "donotemail": True,
        "leadqualitycode": 3,
        "interests": "200,100",
        "ac_lastsyncedon": "2024-05-19T07:45:00Z",
        "birthday": "2000-01-02",
    }  # revenue is one-way, the lookup is read-only


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"1": "Much too long text"}, "ac_industry: 18 characters do not fit ac_industry"),
        ({"3": "7.5"}, "ac_leadscore: '7.5' is not a whole number"),
        ({"6": "Lukewarm"}, "leadqualitycode: 'Lukewarm' has no leadqualitycode option mapped"),
        ({"5": "maybe"}, "donotemail: 'maybe' is not yes/no"),
        ({"8": "soon"}, "ac_lastsyncedon: 'soon' is not a date"),
    ],
)
def test_values_that_do_not_fit_are_reported_and_left_out(values, problem):
    change = mapper().to_dynamics({}, values)
    assert change.body == {}
    assert len(change.problems) == 1 and change.problems[0].startswith(problem)


def test_standard_mapping_is_the_default_and_hash_is_stable():
    row = {"emailaddress1": "g@example.com", "lastname": "Hopper", "mobilephone": "555"}
    via_mapping = to_activecampaign("contact", row)
    via_mapper = Mapper.from_config("contact", []).to_activecampaign(row).payload
    assert via_mapping == via_mapper
    assert via_mapping.phone == "555"
    assert payload_hash(via_mapping) == payload_hash(via_mapper)
    assert payload_hash(via_mapping) != payload_hash(
        to_activecampaign("contact", {**row, "lastname": "Hopper2"})
    )


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"ac_field": "nickname", "dynamics_column": "x"}], "neither a standard field"),
        ([{"ac_field": "1", "dynamics_column": "x", "direction": "sideways"}], "direction"),
        ([{"ac_field": "1", "dynamics_column": "a"}, {"ac_field": "1", "dynamics_column": "b"}],
         "mapped twice"),
    ],
)
def test_bad_mappings_are_refused(items, message):
    with pytest.raises(MappingError, match=message):
        parse_mappings(items)
