"""``bridge.timeline.normalise``: ActiveCampaign activities → timeline items (no I/O)."""

from __future__ import annotations

from bridge.actions import normalise_record_ids
from bridge.timeline import _Names, app_base_url, normalise

APP = "https://acme.activehosted.com"


def item(activity: dict, body: dict | None = None) -> dict:
    return normalise(activity, _Names(body or {}), APP)


def test_app_url_of_an_account():
    assert app_base_url("https://acme.api-us1.com") == APP
    assert app_base_url("https://acme.api-us12.com/") == APP
    assert app_base_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_names_come_from_side_loads_and_json_data_may_be_a_string():
    body = {"campaigns": [{"id": "7", "name": "Spring newsletter"}]}
    sent = item(
        {"id": "1", "tstamp": "2024-03-01T10:00:00-05:00", "reference_type": "Log",
         "reference_action": "sent", "jsonData": '{"campaign": "7"}'},
        body,
    )
    assert sent["kind"] == "email_sent" and sent["icon"] == "send"
    assert sent["text"] == "Was sent the campaign 'Spring newsletter'"
    assert sent["occurred_at"] == "2024-03-01T15:00:00Z"
    assert sent["ac_url"] == f"{APP}/report/#/campaign/7/overview"


def test_one_to_one_email_and_unknown_types_are_shown_not_dropped():
    email = item({"id": "2", "reference_type": "SubscriberEmail", "reference_action": "",
                  "jsonData": None, "tstamp": "0000-00-00 00:00:00"})
    assert (email["kind"], email["text"], email["occurred_at"]) == (
        "email_sent", "Was sent an email", None,
    )
    other = item({"id": "3", "reference_type": "DealActivity", "reference_action": "update"})
    assert other["kind"] == "other" and other["text"] == "ActiveCampaign deal activity (update)"
    assert other["source"] == {"reference_type": "DealActivity", "reference_action": "update"}


def test_record_ids_are_normalised_and_bad_ones_reported_by_position():
    ids, problems = normalise_record_ids(
        ["{AAAAAAAA-1111-4111-8111-111111111111}", "aaaaaaaa-1111-4111-8111-111111111111",
         "nope", 42]
    )
    assert ids == ["aaaaaaaa-1111-4111-8111-111111111111"]
    assert sorted(problems) == ["2", "3"]
