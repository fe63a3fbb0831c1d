"""Criteria: the OData ``$filter`` and the Python evaluation agree (against the emulator)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.criteria import Condition, Criteria, CriteriaError

CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "criteria-secret"


# --- plain behaviour -----------------------------------------------------------------


def test_empty_criteria_match_everything_and_compile_to_no_filter():
    criteria = Criteria.for_entity_config("criteria", [])
    assert criteria.to_odata() is None
    assert criteria.matches({})
    assert Criteria.for_entity_config("all", [{"field": "x", "operator": "eq", "value": 1}]) \
        == Criteria()


def test_compiles_each_operator():
    criteria = Criteria.from_config(
        [
            {"field": "companyname", "operator": "contains", "value": "O'Neil"},
            {"field": "firstname", "operator": "begins_with", "value": "A"},
            {"field": "numberofemployees", "operator": "gt", "value": 10},
            {"field": "donotemail", "operator": "eq", "value": False},
            {"field": "jobtitle", "operator": "ne", "value": "CEO"},
            {"field": "ac_lastsyncedon", "operator": "on", "value": "2024-02-29"},
            {"field": "description", "operator": "is_empty"},
        ]
    )
    assert criteria.to_odata() == (
        "contains(companyname,'O''Neil') and startswith(firstname,'A')"
        " and numberofemployees gt 10 and donotemail eq false"
        " and (jobtitle ne 'CEO' or jobtitle eq null)"
        " and (ac_lastsyncedon ge 2024-02-29T00:00:00Z and ac_lastsyncedon lt 2024-03-01T00:00:00Z)"
        " and description eq null"
    )
    assert criteria.columns == sorted(
        ["companyname", "firstname", "numberofemployees", "donotemail", "jobtitle",
         "ac_lastsyncedon", "description"]
    )


def test_python_semantics():
    row = {"companyname": "Contoso Ltd", "revenue": 10.5, "ac_lastsyncedon": "2024-01-31T23:59:59Z",
           "jobtitle": None, "description": ""}
    check = lambda field, op, value=None: Condition(field, op, value).matches(row)  # noqa: E731
    assert check("companyname", "eq", "CONTOSO LTD")
    assert check("companyname", "contains", "toso")
    assert not check("companyname", "begins_with", "ltd")
    assert check("jobtitle", "ne", "CEO")  # empty counts as "not CEO"
    assert not check("jobtitle", "contains", "")  # nothing matches an empty column
    assert check("description", "is_empty") and check("jobtitle", "is_empty")
    assert check("revenue", "gt", 10) and not check("revenue", "lt", 10)
    assert check("ac_lastsyncedon", "on", "2024-01-31")
    assert check("ac_lastsyncedon", "before", "2024-02-01")
    assert check("ac_lastsyncedon", "after", "2024-01-30")
    assert not check("ac_lastsyncedon", "after", "2024-01-31")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"field": "firstname", "operator": "like", "value": "a"}, "unknown operator"),
        ({"field": "First Name", "operator": "eq", "value": "a"}, "not a Dataverse column"),
        ({"field": "firstname", "operator": "eq"}, "needs a value"),
        ({"field": "createdon", "operator": "on", "value": "yesterday"}, "not a date"),
        ({"field": "firstname", "operator": "contains", "value": 3}, "needs a text value"),
        ({"field": "revenue", "operator": "gt", "value": [1]}, "must be text"),
    ],
)
def test_rejects_bad_configuration(item, message):
    with pytest.raises(CriteriaError, match=message):
        Criteria.from_config([item])


# --- property: OData on the emulator == Python ----------------------------------------


@pytest.fixture(scope="module")
def dataverse():
    from emulators.dataverse import DataverseEmulator

    emu = DataverseEmulator(apps={CLIENT_ID: CLIENT_SECRET}).start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def client(dataverse):
    from bridge.clients.dataverse import DataverseClient

    return DataverseClient(
        dataverse.url,
        tenant_id=dataverse.tenant_id,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        authority_host=dataverse.authority_host,
        verify=str(dataverse.ca_bundle),
    )


WORDS = ["Ada", "ada", "Ann", "Contoso", "contoso ltd", "O'Neil", "Zed", "ß", "SS", "a b"]
texts = st.one_of(st.sampled_from(WORDS), st.text(alphabet="aAbB' ", min_size=1, max_size=4))
days = st.dates(min_value=__import__("datetime").date(2023, 12, 29),
                max_value=__import__("datetime").date(2024, 1, 3))
datetimes = st.builds(
    lambda d, h, m: f"{d.isoformat()}T{h:02d}:{m:02d}:00Z",
    days, st.sampled_from([0, 11, 23]), st.sampled_from([0, 59]),
)
COLUMNS = {
    # column: (value strategy for rows, value strategy for criteria, operators)
    "firstname": (texts, texts, ["eq", "ne", "contains", "begins_with", "gt", "lt",
                                 "is_empty", "is_not_empty"]),
    "companyname": (texts, texts, ["eq", "ne", "contains", "begins_with", "is_empty"]),
    "numberofemployees": (st.integers(-3, 3), st.integers(-3, 3),
                          ["eq", "ne", "gt", "lt", "is_empty", "is_not_empty"]),
    "revenue": (st.sampled_from([-1.5, 0.0, 2.25, 10.0]), st.sampled_from([-1, 0, 2.25, 10.5]),
                ["eq", "ne", "gt", "lt", "is_empty"]),
    "donotemail": (st.booleans(), st.booleans(), ["eq", "ne"]),
    "leadqualitycode": (st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 3]),
                        ["eq", "ne", "gt", "lt", "is_empty"]),
    "ac_lastsyncedon": (datetimes, days.map(lambda d: d.isoformat()),
                        ["on", "before", "after", "is_empty", "is_not_empty"]),
}


@st.composite
def conditions(draw):
    column = draw(st.sampled_from(sorted(COLUMNS)))
    _, values, operators = COLUMNS[column]
    operator = draw(st.sampled_from(operators))
    value = None if operator in ("is_empty", "is_not_empty") else draw(values)
    return {"field": column, "operator": operator, "value": value}


@st.composite
def records(draw):
    row = {}
    for column, (values, _, _) in COLUMNS.items():
        value = draw(st.one_of(st.none(), values))
        if value is not None or column == "donotemail":
            row[column] = value if value is not None else False
    return row


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    criteria=st.lists(conditions(), min_size=1, max_size=3),
    rows=st.lists(records(), min_size=1, max_size=5),
)
def test_odata_and_python_agree_on_the_emulator(dataverse, client, criteria, rows):
    compiled = Criteria.from_config(criteria)
    batch = uuid.uuid4().hex
    ids = {}
    for index, row in enumerate(rows):
        body = {"lastname": f"row{index}", "subject": batch, **row}
        ids[dataverse.create_record("lead", body)] = row
    columns = ["leadid", *COLUMNS]
    odata_filter = f"subject eq '{batch}' and ({compiled.to_odata()})"
    selected = {r["leadid"] for r in client.query("leads", select=columns, filter=odata_filter)}

    # The Python side judges the row as a worker sees it: re-read over the Web API.
    read_back = list(client.query("leads", select=columns, filter=f"subject eq '{batch}'"))
    assert len(read_back) == len(rows)
    expected = {r["leadid"] for r in read_back if compiled.matches(r)}
    assert selected == expected, (compiled.to_odata(), read_back)
