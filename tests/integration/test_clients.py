"""The two API clients against the emulators, over real HTTP(S)."""

from __future__ import annotations

import time

import pytest
import redis as redis_lib

from bridge.clients.activecampaign import ActiveCampaignClient, ActiveCampaignError
from bridge.ratelimit import RedisRateLimiter, activecampaign_limiter_key

AC_KEY = "client-test-key"


@pytest.fixture
def ac_emu():
    from emulators.activecampaign import ActiveCampaignEmulator

    emu = ActiveCampaignEmulator(api_key=AC_KEY, requests_per_second=5).start()
    yield emu
    emu.stop()


@pytest.fixture
def redis_client(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def ac(ac_emu, redis_client) -> ActiveCampaignClient:
    limiter = RedisRateLimiter(redis_client, activecampaign_limiter_key(ac_emu.url), rate=5)
    return ActiveCampaignClient(ac_emu.url, AC_KEY, limiter=limiter, redis=redis_client)


# --- ActiveCampaign -------------------------------------------------------------


def test_me_and_a_bad_key(ac, ac_emu):
    assert ac.me()["username"]
    bad = ActiveCampaignClient(ac_emu.url, "wrong-key-1234", limiter=None)
    with pytest.raises(ActiveCampaignError) as caught:
        bad.me()
    assert caught.value.status == 403
    assert not caught.value.transient
    assert "API key" in caught.value.message
    assert "wrong-key-1234" not in str(caught.value)
    assert "wrong-key-1234" not in repr(bad)


def test_sync_update_find_and_tags(ac, ac_emu):
    contact = ac.sync_contact("ada@example.com", "Ada", "Lovelace", "+44 20 7946 0000")
    contact_id = str(contact["id"])
    again = ac.sync_contact("ada@example.com", "Ada", "King")
    assert str(again["id"]) == contact_id
    assert ac.get_contact(contact_id)["lastName"] == "King"
    assert str(ac.find_contact_by_email("ADA@example.com")["id"]) == contact_id
    assert ac.find_contact_by_email("nobody@example.com") is None

    updated = ac.update_contact(contact_id, email="ada.king@example.com")
    assert updated["email"] == "ada.king@example.com"
    assert ac_emu.find_contact("ada.king@example.com")["id"] == contact_id
    assert ac_emu.find_contact("ada@example.com") is None

    tag_id = ac.ensure_tag("D365: Lead")
    assert ac.ensure_tag("D365: Lead") == tag_id  # cached, and no duplicate tag
    assert ac.find_tag("D365: Lead")["id"] == tag_id
    ac.add_tag(contact_id, tag_id)
    assert ac_emu.find_contact("ada.king@example.com")["tags"] == ["D365: Lead"]
    rows = ac.list_contact_tags(contact_id)
    assert [str(r["tag"]) for r in rows] == [tag_id]
    ac.remove_contact_tag(rows[0]["id"])
    assert ac_emu.find_contact("ada.king@example.com")["tags"] == []


def test_tag_cache_is_shared_through_redis(ac, ac_emu, redis_client):
    tag_id = ac.ensure_tag("D365: Contact")
    other = ActiveCampaignClient(ac_emu.url, AC_KEY, limiter=None, redis=redis_client)
    ac_emu.reset_log()
    assert other.ensure_tag("D365: Contact") == tag_id
    assert ac_emu.request_log == []


def test_field_values_automations_campaigns_activities(ac, ac_emu):
    field_id = ac_emu.seed_field("Industry", "text")
    contact = ac.sync_contact("grace@example.com", "Grace", field_values={field_id: "Navy"})
    contact_id = str(contact["id"])
    assert ac_emu.find_contact("grace@example.com")["fields"][field_id] == "Navy"
    assert any(str(f["id"]) == field_id for f in ac.list_fields())

    automation_id = ac_emu.seed_automation("Welcome series")
    assert [a["name"] for a in ac.list_automations()] == ["Welcome series"]
    ac.add_to_automation(contact_id, automation_id)
    assert ac_emu.find_contact("grace@example.com")["automations"] == [automation_id]

    campaign_id = ac_emu.seed_campaign("Spring", message_subject="Hello spring")
    assert [c["name"] for c in ac.list_campaigns()] == ["Spring"]
    message_id = str(ac.campaign_messages(campaign_id)[0]["message"])
    assert message_id == ac_emu.campaign_message_id(campaign_id)
    assert ac.campaign_send("grace@example.com", campaign_id, message_id)["result_code"] == 1
    with pytest.raises(ActiveCampaignError) as caught:
        ac.campaign_send("nobody@example.com", campaign_id, message_id)
    assert not caught.value.transient
    assert "nobody@example.com" in caught.value.message
    # the key never went into a URL
    assert all(AC_KEY not in (e.get("query") or "") for e in ac_emu.request_log)

    body = ac.activities(contact_id)
    assert "activities" in body


def test_readable_errors(ac, ac_emu):
    with pytest.raises(ActiveCampaignError) as caught:
        ac.get_contact(999999)
    assert caught.value.status == 404
    assert "No Result found" in caught.value.message
    assert not caught.value.transient

    ac.sync_contact("taken@example.com")
    other = ac.sync_contact("mine@example.com")
    with pytest.raises(ActiveCampaignError) as caught:
        ac.update_contact(other["id"], email="taken@example.com")
    assert caught.value.status == 422
    assert "already exists" in caught.value.message.lower()

    with pytest.raises(ActiveCampaignError) as caught:
        ac.add_tag(999999, ac.ensure_tag("x"))
    assert caught.value.status in (404, 422)
    assert caught.value.message


def test_paginate_follows_string_totals(ac, ac_emu):
    for n in range(105):
        ac_emu.seed_contact(f"user{n}@example.com")
    emails = [c["email"] for c in ac.paginate("contacts", "contacts")]
    assert len(emails) == 105
    assert len(set(emails)) == 105


def test_bulk_import_and_info(ac, ac_emu):
    queued = ac.bulk_import(
        [
            {"email": f"bulk{n}@example.com", "first_name": "B", "tags": ["D365: Lead"]}
            for n in range(3)
        ]
    )
    batch_id = queued["batchId"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = ac.import_info(batch_id)
        if info.get("status") == "completed":
            break
        time.sleep(0.2)
    assert info["status"] == "completed"
    assert ac_emu.find_contact("bulk1@example.com")["tags"] == ["D365: Lead"]

    with pytest.raises(ActiveCampaignError) as caught:
        ac.bulk_import([{"email": "not-an-email", "first_name": "X"}, {"email": "ok@example.com"}])
    assert caught.value.status == 400
    assert "contact" in caught.value.message


def test_webhooks(ac, ac_emu):
    hook = ac.create_webhook("Bridge", "http://127.0.0.1:9/hook", ["update"], ["admin"])
    assert any(str(h["id"]) == str(hook["id"]) for h in ac.list_webhooks())
    ac.delete_webhook(hook["id"])
    assert ac.list_webhooks() == []


def test_429_is_retried_without_a_limiter(ac_emu):
    ac_emu.set_limits(requests_per_second=2, retry_after_seconds=1)
    client = ActiveCampaignClient(ac_emu.url, AC_KEY, limiter=None)
    for n in range(6):
        client.sync_contact(f"burst{n}@example.com")
    assert ac_emu.count_status(429) >= 1
    assert len(ac_emu.contacts()) == 6  # nothing lost


def test_429_pauses_the_shared_limiter(ac_emu, redis_client):
    ac_emu.set_limits(requests_per_second=2, retry_after_seconds=1)
    # A limiter that believes in 5/s: the emulator's 429 must make everyone wait.
    limiter = RedisRateLimiter(redis_client, "ratelimit:test-429", rate=5)
    client = ActiveCampaignClient(ac_emu.url, AC_KEY, limiter=limiter)
    for n in range(5):
        client.sync_contact(f"paused{n}@example.com")
    assert ac_emu.count_status(429) >= 1
    assert len(ac_emu.contacts()) == 5


def test_limiter_keeps_under_the_limit(ac, ac_emu):
    for n in range(12):
        ac.sync_contact(f"steady{n}@example.com")
    assert ac_emu.count_status(429) == 0
    assert ac_emu.max_requests_in_any_window(1.0) <= 5


def test_5xx_and_unreachable_are_transient():
    client = ActiveCampaignClient(
        "http://127.0.0.1:9", AC_KEY, limiter=None, max_attempts=2, backoff_base=0.01
    )
    with pytest.raises(ActiveCampaignError) as caught:
        client.me()
    assert caught.value.transient
    assert "after 2 attempts" in caught.value.message
    assert AC_KEY not in caught.value.message


# --- Dataverse ------------------------------------------------------------------

DV_CLIENT_ID = "22222222-2222-4333-8444-555555555555"
DV_SECRET = "client-test-secret"


@pytest.fixture
def dv_emu():
    from emulators.dataverse import DataverseEmulator

    emu = DataverseEmulator(apps={DV_CLIENT_ID: DV_SECRET}).start()
    yield emu
    emu.stop()


@pytest.fixture
def dv(dv_emu):
    from bridge.clients.dataverse import DataverseClient

    return DataverseClient(
        dv_emu.url,
        tenant_id=dv_emu.tenant_id,
        client_id=DV_CLIENT_ID,
        client_secret=DV_SECRET,
        authority_host=dv_emu.authority_host,
        verify=dv_emu.ca_bundle,
    )


def api_calls(emu, method: str | None = None) -> list[dict]:
    return [
        e
        for e in emu.request_log
        if "/api/data/" in e["path"] and (method is None or e["method"] == method)
    ]


def test_token_from_msal_and_whoami(dv, dv_emu):
    assert dv.whoami()["OrganizationId"] == dv_emu.org_id
    token = dv.token()
    assert token == dv.token()  # msal's cache, not a new request each time


def test_bad_client_secret(dv_emu):
    from bridge.clients.dataverse import DataverseAuthError, DataverseClient

    client = DataverseClient(
        dv_emu.url,
        tenant_id=dv_emu.tenant_id,
        client_id=DV_CLIENT_ID,
        client_secret="wrong-secret-value",
        authority_host=dv_emu.authority_host,
        verify=dv_emu.ca_bundle,
    )
    with pytest.raises(DataverseAuthError) as caught:
        client.whoami()
    assert not caught.value.transient
    assert "wrong-secret-value" not in str(caught.value)


def test_crud_with_tag_and_404(dv, dv_emu):
    from bridge.clients.dataverse import DataverseNotFound

    lead_id = dv.create("leads", {"lastname": "Lovelace", "emailaddress1": "ada@example.com"})
    row = dv.get("leads", "{" + lead_id.upper() + "}", select=["lastname", "emailaddress1"])
    assert (row["leadid"], row["lastname"]) == (lead_id, "Lovelace")

    dv.update("leads", lead_id, {"ac_activecampaigncontactid": "42"}, tag="acbridge:push")
    assert dv_emu.get_record("lead", lead_id)["ac_activecampaigncontactid"] == "42"
    assert any("tag=acbridge:push" in e["path"] for e in api_calls(dv_emu, "PATCH"))

    dv.delete("leads", lead_id)
    with pytest.raises(DataverseNotFound) as caught:
        dv.get("leads", lead_id)
    assert caught.value.status == 404
    assert caught.value.code == "0x80040217"
    assert "Does Not Exist" in caught.value.message
    assert not caught.value.transient
    with pytest.raises(DataverseNotFound):
        dv.update("leads", lead_id, {"lastname": "Gone"})  # If-Match: * never re-creates


def test_query_follows_next_links(dv, dv_emu):
    for n in range(7):
        dv_emu.create_record("contact", {"lastname": f"Row {n}", "emailaddress1": f"r{n}@x.org"})
    before = len(api_calls(dv_emu, "GET"))
    rows = list(dv.query("contacts", select=["lastname"], page_size=3))
    assert sorted(r["lastname"] for r in rows) == [f"Row {n}" for n in range(7)]
    assert len(api_calls(dv_emu, "GET")) - before == 3
    filtered = list(dv.query("contacts", select=["lastname"], filter="lastname eq 'Row 3'"))
    assert [r["lastname"] for r in filtered] == ["Row 3"]


def test_changes_with_delta_tokens(dv, dv_emu):
    first = dv_emu.create_record("lead", {"lastname": "One", "emailaddress1": "one@x.org"})
    rows, token = dv.changes("leads", ["lastname"], page_size=1)
    assert [r["leadid"] for r in rows] == [first]
    assert token

    second = dv_emu.create_record("lead", {"lastname": "Two"})
    dv_emu.delete_record("lead", first)
    rows, next_token = dv.changes("leads", ["lastname"], token)
    assert next_token and next_token != token
    assert [r["leadid"] for r in rows if "leadid" in r] == [second]
    assert [r["id"] for r in rows if r.get("reason") == "deleted"] == [first]


def test_429_retry_after_is_honoured(dv, dv_emu):
    dv.whoami()
    dv_emu.set_limits(requests_per_window=3, window_seconds=2)
    started = time.monotonic()
    for _ in range(5):
        dv.whoami()
    assert time.monotonic() - started >= 1.0
    assert any(e["status"] == 429 for e in dv_emu.request_log)


def test_unreachable_authority_is_a_transient_auth_error():
    from bridge.clients.dataverse import DataverseAuthError, DataverseClient

    client = DataverseClient(
        "https://127.0.0.1:9",
        tenant_id="t",
        client_id="c",
        client_secret="s",
        authority_host="https://127.0.0.1:9",
    )
    with pytest.raises(DataverseAuthError) as caught:
        client.token()  # the authority is contacted lazily, on the first token
    assert caught.value.transient


def test_tokens_are_shared_through_redis_so_new_processes_do_not_sign_in_again(
    dataverse, redis_url
):
    import redis as redis_lib

    from bridge.clients.dataverse import DataverseClient, RedisTokenCache
    from bridge.crypto import SecretBox, new_secret_key
    from tests.integration.conftest import CLIENT_ID, CLIENT_SECRET

    cache = RedisTokenCache(
        redis_lib.Redis.from_url(redis_url), SecretBox(new_secret_key().encode())
    )

    def client() -> DataverseClient:
        return DataverseClient(
            dataverse.url,
            tenant_id=dataverse.tenant_id,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            authority_host=dataverse.authority_host,
            verify=dataverse.ca_bundle,
            token_cache=cache,
        )

    first = client().token()
    token_requests = [r for r in dataverse.request_log if "/oauth2/" in r["path"]]
    stored = redis_lib.Redis.from_url(redis_url).keys("dv:token:*")
    assert len(stored) == 1 and first.encode() not in redis_lib.Redis.from_url(redis_url).get(
        stored[0]
    )
    assert client().token() == first
    assert [r for r in dataverse.request_log if "/oauth2/" in r["path"]] == token_requests
