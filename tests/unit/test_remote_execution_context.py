"""The RemoteExecutionContext schemas against real Dataverse payloads and our own fixtures."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from marshmallow import ValidationError

from bridge.echo import echo_tag, is_bridge_write
from bridge.schemas.dataverse import (
    Entity,
    EntityReference,
    RemoteExecutionContextSchema,
    WebhookEvent,
    load_webhook_event,
    parse_dotnet_date,
)

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "dataverse"
FIXTURE_ORG = "8f2b0c4e-6f1a-4a77-9c1e-2f9d7b1c3a10"
LEAD_ID = "c4a1f3d2-7e6b-4a59-8c3d-2b1a0f9e8d7c"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES_DIR / name).read_text())


# --- real samples ------------------------------------------------------------------------


def test_every_real_sample_loads(shared_dir: Path):
    samples = sorted((shared_dir / "dataverse" / "webhook-samples").glob("*.json"))
    assert len(samples) >= 3
    for path in samples:
        payload = json.loads(path.read_text())
        event = load_webhook_event(payload)
        assert isinstance(event, WebhookEvent), path.name
        assert event.org_id == payload["OrganizationId"].lower()
        assert event.record_id == payload["PrimaryEntityId"].lower()
        assert event.message == payload["MessageName"]
        assert event.size_exceeded is False
        context = RemoteExecutionContextSchema().load(payload)
        assert isinstance(context["input_parameters"]["Target"], Entity), path.name
        assert context["operation_created_on"].tzinfo is not None


def test_real_contact_update_sample(shared_dir: Path):
    path = shared_dir / "dataverse/webhook-samples/ms-docs-use-webhooks-contact-update-async.json"
    payload = json.loads(path.read_text())
    event = load_webhook_event(payload)
    assert event == WebhookEvent(
        org_id="4ef5b371-e89e-e711-8122-000d3aa2331c",
        entity="contact",
        record_id="6d81597f-0f9f-e711-8122-000d3aa2331c",
        message="Update",
        operation_id="4af10637-4ea2-e711-8122-000d3aa2331c",
        step_id="75417616-4ea2-e711-8122-000d3aa2331c",
        user_id="75c2dd85-e89e-e711-8122-000d3aa2331c",
        initiating_user_id="75c2dd85-e89e-e711-8122-000d3aa2331c",
        depth=1,
        tag=None,
        changed_attributes=frozenset(
            {
                "firstname",
                "contactid",
                "fullname",
                "yomifullname",
                "modifiedon",
                "modifiedby",
                "modifiedonbehalfby",
            }
        ),
        size_exceeded=False,
    )
    context = RemoteExecutionContextSchema().load(payload)
    target = context["input_parameters"]["Target"]
    assert target.attributes["modifiedon"] == dt.datetime(2017, 9, 26, 0, 4, 7, tzinfo=dt.UTC)
    assert target.attributes["modifiedby"] == EntityReference(
        "systemuser", "75c2dd85-e89e-e711-8122-000d3aa2331c", None, {}
    )
    image = context["post_entity_images"]["AsynchronousStepPrimaryName"]
    assert isinstance(image, Entity)  # images carry no __type
    assert image.attributes == {
        "fullname": "James Glynn (sample)",
        "contactid": "6d81597f-0f9f-e711-8122-000d3aa2331c",
    }
    parent = context["parent_context"]
    assert parent["stage"] == 30
    assert parent["input_parameters"]["SuppressDuplicateDetection"] is False
    assert parent["shared_variables"]["ChangedEntityTypes"]["contact"] == "Update"
    assert context["operation_created_on"] == dt.datetime.fromtimestamp(1506409448, dt.UTC)
    assert context["operation_created_on"].utcoffset() == dt.timedelta(hours=-7)


def test_real_create_sample_with_formatted_values(shared_dir: Path):
    path = (
        shared_dir
        / "dataverse/webhook-samples/ms-docs-contactcenter-msdyn_agentstatus-create-sync.json"
    )
    context = RemoteExecutionContextSchema().load(json.loads(path.read_text()))
    target = context["input_parameters"]["Target"]
    assert target.attributes["statecode"]["Value"] == 0
    assert target.formatted_values  # populated in this sample
    assert context["output_parameters"]["id"] == "4b1e3d75-a749-ef11-acce-00224802d26d"
    assert context["mode"] == 0 and context["is_in_transaction"] is True
    assert context["shared_variables"]["IsAutoTransact"] is True


# --- the project's fixtures -------------------------------------------------------------


def test_lead_create_fixture():
    event = load_webhook_event(fixture("lead-create.json"))
    assert (event.org_id, event.entity, event.record_id, event.message) == (
        FIXTURE_ORG,
        "lead",
        LEAD_ID,
        "Create",
    )
    assert {"emailaddress1", "firstname", "lastname"} <= event.changed_attributes
    context = RemoteExecutionContextSchema().load(fixture("lead-create.json"))
    target = context["input_parameters"]["Target"]
    assert target.formatted_values["statecode"] == "Open"
    assert target.attributes["createdon"] == dt.datetime(2024, 11, 28, 13, 20, tzinfo=dt.UTC)


def test_lead_update_fixture_has_only_changed_columns():
    event = load_webhook_event(fixture("lead-update.json"))
    assert event.message == "Update"
    assert event.changed_attributes == {
        "emailaddress1",
        "leadid",
        "modifiedon",
        "modifiedby",
        "modifiedonbehalfby",
    }
    context = RemoteExecutionContextSchema().load(fixture("lead-update.json"))
    assert context["pre_entity_images"]["PreImage"].attributes["emailaddress1"] == "ada@example.com"


def test_contact_delete_fixture_has_reference_target():
    event = load_webhook_event(fixture("contact-delete.json"))
    assert (event.entity, event.message) == ("contact", "Delete")
    assert event.changed_attributes == frozenset()
    target = RemoteExecutionContextSchema().load(fixture("contact-delete.json"))[
        "input_parameters"
    ]["Target"]
    assert target == EntityReference("contact", event.record_id, None, {})


def test_stripped_payload_over_256kb_is_accepted():
    payload = fixture("lead-update-size-exceeded.json")
    assert "InputParameters" not in payload
    event = load_webhook_event(payload)
    assert event.size_exceeded is True
    assert event.changed_attributes == frozenset()
    assert (event.entity, event.record_id, event.message) == ("lead", LEAD_ID, "Update")


def test_size_exceeded_header_is_authoritative():
    assert load_webhook_event(fixture("lead-update.json"), size_exceeded_header=True).size_exceeded


# --- details ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "offset"),
    [
        ("/Date(1506384247000)/", dt.datetime(2017, 9, 26, 0, 4, 7, tzinfo=dt.UTC), 0),
        ("/Date(1722582039000+0000)/", dt.datetime(2024, 8, 2, 7, 0, 39, tzinfo=dt.UTC), 0),
        ("/Date(1506409448000-0700)/", dt.datetime(2017, 9, 26, 7, 4, 8, tzinfo=dt.UTC), -7 * 60),
        ("\\/Date(1721816905786)\\/", dt.datetime(2024, 7, 24, 10, 28, 25, 786000, dt.UTC), 0),
        ("/Date(-1000+0130)/", dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.UTC), 90),
    ],
)
def test_dotnet_dates(raw, expected, offset):
    parsed = parse_dotnet_date(raw)
    assert parsed == expected  # the same instant whatever the display offset
    assert parsed.utcoffset() == dt.timedelta(minutes=offset)


def test_bad_dates_are_reported_per_field():
    payload = fixture("lead-update.json")
    payload["OperationCreatedOn"] = "yesterday"
    with pytest.raises(ValidationError) as info:
        load_webhook_event(payload)
    assert "OperationCreatedOn" in info.value.messages


def test_type_hint_with_escaped_or_plain_slashes():
    escaped = json.loads((FIXTURES_DIR / "lead-update.json").read_text())
    raw_text = (FIXTURES_DIR / "lead-update.json").read_text().replace("\\/", "/")
    plain = json.loads(raw_text)
    # A double-escaped hint (a literal backslash left in the string) is tolerated too.
    odd = copy.deepcopy(plain)
    odd["InputParameters"][0]["value"]["__type"] = "Entity:http:\\/\\/schemas.microsoft.com"
    for payload in (escaped, plain, odd):
        target = RemoteExecutionContextSchema().load(payload)["input_parameters"]["Target"]
        assert isinstance(target, Entity)
        assert target.attributes["modifiedon"].year == 2024


def test_guids_are_normalised():
    payload = fixture("lead-update.json")
    payload["PrimaryEntityId"] = "{" + LEAD_ID.upper() + "}"
    payload["OrganizationId"] = FIXTURE_ORG.upper()
    event = load_webhook_event(payload)
    assert event.record_id == LEAD_ID
    assert event.org_id == FIXTURE_ORG


def test_unknown_keys_are_ignored():
    payload = fixture("lead-update.json")
    payload["SomethingMicrosoftAddsIn2030"] = {"nested": [1, 2]}
    payload["InputParameters"][0]["value"]["NewEntityProperty"] = True
    assert load_webhook_event(payload).message == "Update"


@pytest.mark.parametrize(
    "missing",
    ["MessageName", "PrimaryEntityName", "PrimaryEntityId", "OrganizationId", "OperationId"],
)
def test_required_fields(missing):
    payload = fixture("lead-update.json")
    del payload[missing]
    with pytest.raises(ValidationError) as info:
        load_webhook_event(payload)
    assert set(info.value.messages) == {missing}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("OperationId", "not-a-guid"),
        ("PrimaryEntityId", 12),
        ("MessageName", ""),
        ("InputParameters", {"Target": {}}),
        ("SharedVariables", [{"value": "no key"}]),
        ("Depth", "deep"),
    ],
)
def test_invalid_values_name_the_field(key, value):
    payload = fixture("lead-update.json")
    payload[key] = value
    with pytest.raises(ValidationError) as info:
        load_webhook_event(payload)
    assert key in info.value.messages


def test_non_object_body():
    with pytest.raises(ValidationError):
        load_webhook_event([1, 2, 3])


def test_pre_operation_create_uses_the_new_id():
    payload = fixture("lead-create.json")
    payload["PrimaryEntityId"] = "00000000-0000-0000-0000-000000000000"
    assert load_webhook_event(payload).record_id == LEAD_ID


def test_tag_from_shared_variables_or_parent_context():
    payload = fixture("lead-update.json")
    payload["SharedVariables"].append({"key": "tag", "value": echo_tag("push")})
    event = load_webhook_event(payload)
    assert event.tag == "acbridge:push" and is_bridge_write(event.tag)

    payload = fixture("lead-update.json")
    payload["ParentContext"]["SharedVariables"] = [{"key": "tag", "value": "acbridge:pull"}]
    assert load_webhook_event(payload).tag == "acbridge:pull"

    payload = fixture("lead-update.json")
    payload["SharedVariables"] = [{"key": "tag", "value": "someone-else"}]
    event = load_webhook_event(payload)
    assert event.tag == "someone-else" and not is_bridge_write(event.tag)
    assert not is_bridge_write(None)


def test_null_collections_are_empty():
    payload = fixture("lead-update.json")
    payload["InputParameters"] = None
    payload["SharedVariables"] = None
    payload["OwningExtension"] = None
    event = load_webhook_event(payload)
    assert event.changed_attributes == frozenset()
    assert event.step_id is None and event.tag is None
