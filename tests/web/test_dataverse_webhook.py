"""POST /webhooks/dataverse against a real migrated database and a real Redis."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from rq import Queue

from bridge.app import create_app
from bridge.db import Database
from bridge.models import Connection
from bridge.queueing import (
    PENDING_TTL_SECONDS,
    SEEN_TTL_SECONDS,
    claim_record,
    enqueue_record_sync,
    get_queue,
    pending_key,
    seen_key,
)
from bridge.runtime import set_runtime
from bridge.web.dataverse_webhooks import KEY_CACHE_CONFIG
from emulators.server import serve_in_thread
from tests.web import (
    FIXTURE_ORG_ID,
    add_connection,
    assert_error,
    fixture_bytes,
    load_fixture,
    make_settings,
    realtime_jobs,
    with_changes,
)

URL = "/webhooks/dataverse"
LEAD_ID = "c4a1f3d2-7e6b-4a59-8c3d-2b1a0f9e8d7c"
CONTACT_ID = "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def app(database_url, redis_url):
    app = create_app(make_settings(database_url, redis_url))
    yield app
    app.extensions["bridge.runtime"].db.engine.dispose()
    set_runtime(None)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def connection(database_url) -> tuple[int, str]:
    return add_connection(database_url, FIXTURE_ORG_ID)


def post(client, payload, key: str | None = None, *, header_key: str | None = None, **kwargs):
    url = URL if key is None else f"{URL}?code={key}"
    headers = kwargs.pop("headers", {})
    if header_key is not None:
        headers["X-Bridge-Webhook-Key"] = header_key
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    kwargs.setdefault("content_type", "application/json; charset=utf-8")
    return client.post(url, data=data, headers=headers, **kwargs)


# --- accepted payloads -------------------------------------------------------------------


def test_real_samples_are_accepted(client, database_url, redis_url, shared_dir: Path):
    samples = sorted((shared_dir / "dataverse" / "webhook-samples").glob("*.json"))
    outcomes = {}
    for path in samples:
        body = path.read_bytes()
        payload = json.loads(body)
        _, key = add_connection(database_url, payload["OrganizationId"])
        response = post(client, body, key)
        assert response.status_code == 202, response.get_json()
        outcomes[path.name] = response.get_json()

    agent = [v for k, v in outcomes.items() if "msdyn_agentstatus" in k]
    assert len(agent) == 2
    assert all(body["status"] == "ignored" for body in agent)
    contact = outcomes["ms-docs-use-webhooks-contact-update-async.json"]
    assert contact == {
        "status": "accepted",
        "queued": True,
        "operation_id": "4af10637-4ea2-e711-8122-000d3aa2331c",
    }
    jobs = realtime_jobs(redis_url)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.func_name == "workers.tasks.sync_record"
    assert job.kwargs == {
        "connection_id": job.kwargs["connection_id"],
        "entity": "contact",
        "record_id": "6d81597f-0f9f-e711-8122-000d3aa2331c",
        "message": "Update",
    }
    assert isinstance(job.kwargs["connection_id"], int)
    assert job.retries_left == 5
    assert job.retry_intervals == [2, 10, 30, 120, 600]
    assert job.failure_ttl == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("name", "entity", "record_id", "message"),
    [
        ("lead-create.json", "lead", LEAD_ID, "Create"),
        ("lead-update.json", "lead", LEAD_ID, "Update"),
        ("contact-delete.json", "contact", CONTACT_ID, "Delete"),
        ("lead-update-size-exceeded.json", "lead", LEAD_ID, "Update"),
    ],
)
def test_fixture_payloads_enqueue_a_sync(
    client, connection, redis_url, name, entity, record_id, message
):
    connection_id, key = connection
    headers = {}
    if "size-exceeded" in name:
        headers["x-ms-dynamics-msg-size-exceeded"] = "true"
    response = post(client, fixture_bytes(name), key, headers=headers)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "accepted" and body["queued"] is True
    assert body["operation_id"] == load_fixture(name)["OperationId"]
    [job] = realtime_jobs(redis_url)
    assert job.func_name == "workers.tasks.sync_record"
    assert job.kwargs == {
        "connection_id": connection_id,
        "entity": entity,
        "record_id": record_id,
        "message": message,
    }
    client_redis = redis_lib.Redis.from_url(redis_url)
    assert client_redis.exists(pending_key(connection_id, entity, record_id))
    assert (
        0 < client_redis.ttl(pending_key(connection_id, entity, record_id)) <= PENDING_TTL_SECONDS
    )
    seen = seen_key(
        FIXTURE_ORG_ID, body["operation_id"], load_fixture(name)["OwningExtension"]["Id"]
    )
    assert 0 < client_redis.ttl(seen) <= SEEN_TTL_SECONDS


def test_key_in_header_works(client, connection):
    _, key = connection
    response = post(client, fixture_bytes("lead-update.json"), header_key=key)
    assert response.status_code == 202
    assert response.get_json()["status"] == "accepted"


def test_org_id_compared_case_insensitively(client, connection):
    _, key = connection
    payload = with_changes(load_fixture("lead-update.json"), OrganizationId=FIXTURE_ORG_ID.upper())
    assert post(client, payload, key).status_code == 202


@pytest.mark.parametrize(
    ("changes", "reason_part"),
    [
        ({"PrimaryEntityName": "account"}, "account"),
        ({"MessageName": "Assign"}, "Assign"),
    ],
)
def test_other_entities_and_messages_are_ignored(
    client, connection, redis_url, changes, reason_part
):
    _, key = connection
    response = post(client, with_changes(load_fixture("lead-update.json"), **changes), key)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "ignored" and reason_part in body["reason"]
    assert realtime_jobs(redis_url) == []


def test_bridge_own_write_is_ignored(client, connection, redis_url):
    _, key = connection
    payload = load_fixture("lead-update.json")
    payload["SharedVariables"].append({"key": "tag", "value": "acbridge:push"})
    response = post(client, payload, key)
    assert response.status_code == 202
    assert response.get_json()["status"] == "ignored"
    assert response.get_json()["reason"] == "bridge's own write"
    assert realtime_jobs(redis_url) == []

    other = load_fixture("lead-update.json")
    other["SharedVariables"].append({"key": "tag", "value": "some-other-integration"})
    assert post(client, other, key).get_json()["status"] == "accepted"


# --- de-duplication and coalescing -----------------------------------------------------------


def test_redelivery_is_a_duplicate(client, connection, redis_url):
    _, key = connection
    body = fixture_bytes("lead-update.json")
    first = post(client, body, key)
    claim_record(redis_lib.Redis.from_url(redis_url), connection[0], "lead", LEAD_ID)
    second = post(client, body, key)
    assert first.get_json()["status"] == "accepted"
    assert second.status_code == 202
    assert second.get_json()["status"] == "duplicate"
    assert len(realtime_jobs(redis_url)) == 1


def test_updates_coalesce_until_the_job_claims_the_record(client, connection, redis_url):
    connection_id, key = connection
    base = load_fixture("lead-update.json")
    queued = []
    for _ in range(5):
        payload = with_changes(base, OperationId=str(uuid.uuid4()))
        response = post(client, payload, key)
        assert response.get_json()["status"] == "accepted"
        queued.append(response.get_json()["queued"])
    assert queued == [True, False, False, False, False]
    assert len(realtime_jobs(redis_url)) == 1

    claim_record(redis_lib.Redis.from_url(redis_url), connection_id, "lead", LEAD_ID)
    response = post(client, with_changes(base, OperationId=str(uuid.uuid4())), key)
    assert response.get_json()["queued"] is True
    assert len(realtime_jobs(redis_url)) == 2


def test_enqueue_failure_releases_the_pending_marker(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    client.set(get_queue(client, "realtime").key, "not a list")  # RQ's RPUSH now fails
    with pytest.raises(redis_lib.ResponseError):
        enqueue_record_sync(client, 7, "lead", LEAD_ID, "Update")
    assert not client.exists(pending_key(7, "lead", LEAD_ID))
    client.delete(get_queue(client, "realtime").key)
    assert enqueue_record_sync(client, 7, "lead", LEAD_ID, "Update") is True
    assert enqueue_record_sync(client, 7, "lead", LEAD_ID, "Update") is False


def test_get_queue_knows_the_three_queues(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    assert [get_queue(client, n).name for n in ("actions", "realtime", "bulk")] == [
        "actions",
        "realtime",
        "bulk",
    ]
    with pytest.raises(ValueError):
        get_queue(client, "default")


# --- authentication and authorization --------------------------------------------------------


def test_missing_key_is_401(client, connection):
    assert_error(post(client, fixture_bytes("lead-update.json")), 401, "missing_webhook_key")


def test_wrong_key_is_401(client, connection):
    response = post(client, fixture_bytes("lead-update.json"), "not-the-key")
    assert_error(response, 401, "invalid_webhook_key")
    response = post(client, fixture_bytes("lead-update.json"), header_key="not-the-key")
    assert_error(response, 401, "invalid_webhook_key")


def test_key_of_another_connection_cannot_act_on_this_org(
    client, connection, database_url, redis_url
):
    """A valid key authenticates its own connection only; another org's payload is refused."""
    _, other_key = add_connection(database_url, str(uuid.uuid4()))
    response = post(client, fixture_bytes("lead-update.json"), other_key)
    assert_error(response, 403, "organization_mismatch")
    assert realtime_jobs(redis_url) == []


def test_org_mismatch_is_403(client, connection, redis_url):
    _, key = connection
    payload = with_changes(load_fixture("lead-update.json"), OrganizationId=str(uuid.uuid4()))
    assert_error(post(client, payload, key), 403, "organization_mismatch")
    assert realtime_jobs(redis_url) == []


def test_revoked_key_stops_working_within_the_cache_ttl(app, client, connection, database_url):
    from bridge.connections import rotate_dataverse_webhook_key

    app.config[KEY_CACHE_CONFIG] = 0.3
    app.extensions.pop("bridge.dataverse_key_cache", None)
    connection_id, old_key = connection
    body = fixture_bytes("lead-update.json")
    assert post(client, body, old_key).status_code == 202

    db = Database(database_url)
    with db.session() as session:
        new_key = rotate_dataverse_webhook_key(session.get(Connection, connection_id))
    db.engine.dispose()

    assert post(client, body, new_key).status_code == 202  # unknown keys are never cached
    time.sleep(0.35)
    assert_error(post(client, body, old_key), 401, "invalid_webhook_key")


# --- unreadable bodies -------------------------------------------------------------------------


def test_malformed_json_is_400(client, connection):
    _, key = connection
    assert_error(post(client, b'{"MessageName": "Update",', key), 400, "malformed_json")
    assert_error(post(client, b"\xff\xfe not utf-8", key), 400, "malformed_json")


def test_schema_errors_are_400_with_fields(client, connection):
    _, key = connection
    payload = load_fixture("lead-update.json")
    del payload["MessageName"]
    payload["OperationId"] = "nope"
    error = assert_error(post(client, payload, key), 400, "invalid_payload")
    assert set(error["fields"]) == {"MessageName", "OperationId"}
    assert error["fields"]["MessageName"] == ["Missing data for required field."]
    assert error["fields"]["OperationId"] == ["Not a valid GUID."]

    error = assert_error(post(client, [1, 2], key), 400, "invalid_payload")
    assert "_schema" in error["fields"]


def test_non_json_content_type_is_415(client, connection):
    _, key = connection
    body = fixture_bytes("lead-update.json")
    assert_error(post(client, body, key, content_type="text/plain"), 415, "unsupported_media_type")
    response = client.post(f"{URL}?code={key}", data=body)
    assert_error(response, 415, "unsupported_media_type")


def test_oversized_body_is_413(client, connection):
    _, key = connection
    big = b'{"padding": "' + b"x" * (1100 * 1024) + b'"}'
    assert_error(post(client, big, key), 413, "payload_too_large")
    # Announced size is refused before the key is even looked at.
    assert_error(post(client, big), 413, "payload_too_large")


def test_oversized_body_without_content_length_is_413(client, connection):
    import io

    _, key = connection
    big = b'{"padding": "' + b"x" * (1100 * 1024) + b'"}'
    response = client.post(
        f"{URL}?code={key}",
        input_stream=io.BytesIO(big),
        content_type="application/json",
    )
    assert_error(response, 413, "payload_too_large")


def test_other_methods_and_paths_answer_json(client):
    assert_error(client.get(URL), 405, "method_not_allowed")
    assert_error(client.get("/nowhere"), 404, "not_found")


# --- dependencies down -------------------------------------------------------------------------


def test_redis_down_is_503_with_retry_after(database_url):
    _, key = add_connection(database_url, FIXTURE_ORG_ID)
    app = create_app(make_settings(database_url, closed_port_url()))
    try:
        response = post(app.test_client(), fixture_bytes("lead-update.json"), key)
        assert_error(response, 503, "redis_unavailable")
        assert response.headers["Retry-After"] == "5"
    finally:
        app.extensions["bridge.runtime"].db.engine.dispose()
        set_runtime(None)


def test_database_down_is_503(redis_url):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(make_settings(f"postgresql://nobody@127.0.0.1:{port}/bridge", redis_url))
    try:
        response = post(app.test_client(), fixture_bytes("lead-update.json"), "some-key")
        assert_error(response, 503, "database_unavailable")
        assert response.headers["Retry-After"] == "5"
    finally:
        set_runtime(None)


# --- logging and real HTTP ---------------------------------------------------------------------


def test_one_log_line_per_delivery_without_secrets(client, connection, caplog):
    _, key = connection
    caplog.set_level(logging.INFO)
    post(client, fixture_bytes("lead-update.json"), key)
    post(client, fixture_bytes("lead-update.json"), "wrong-key")
    post(client, fixture_bytes("lead-update.json"), header_key=key)
    lines = [r for r in caplog.records if r.name == "bridge.web.dataverse_webhooks"]
    assert len(lines) == 3
    messages = [r.getMessage() for r in lines]
    assert messages[0].startswith("dataverse webhook accepted status=202")
    assert messages[1].startswith("dataverse webhook invalid_webhook_key status=401")
    assert messages[2].startswith("dataverse webhook duplicate status=202")
    assert all(key not in m and "wrong-key" not in m for m in caplog.messages)


def test_over_real_http(app, connection, redis_url, caplog):
    connection_id, key = connection
    caplog.set_level(logging.INFO)
    server = serve_in_thread(app)
    try:
        response = requests.post(
            f"{server.url}{URL}",
            params={"code": key},
            data=fixture_bytes("lead-create.json"),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "x-ms-dynamics-organization": "org8f2b0c4e.crm.dynamics.com",
                "x-ms-dynamics-entity-name": "lead",
                "x-ms-dynamics-request-name": "Create",
                "x-ms-correlation-request-id": str(uuid.uuid4()),
            },
            timeout=10,
        )
        assert response.status_code == 202
        assert response.json()["status"] == "accepted"

        unauthorized = requests.post(
            f"{server.url}{URL}?code=bad",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert unauthorized.status_code == 401
        assert unauthorized.json()["error"]["code"] == "invalid_webhook_key"

        def chunks():
            yield b'{"padding": "'
            for _ in range(12):
                yield b"x" * (100 * 1024)
            yield b'"}'

        too_big = requests.post(
            f"{server.url}{URL}?code={key}",
            data=chunks(),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
    finally:
        server.stop()
    [job] = Queue("realtime", connection=redis_lib.Redis.from_url(redis_url)).jobs
    assert job.kwargs["connection_id"] == connection_id
    assert job.kwargs["message"] == "Create"
    assert any("/webhooks/dataverse" in m for m in caplog.messages)  # the access log ran
    assert all(key not in m for m in caplog.messages)


def test_nested_schema_errors_are_json_objects(client, connection):
    _, key = connection
    payload = load_fixture("lead-update.json")
    payload["SharedVariables"] = [
        {"value": "no key"},
        {"key": "tag", "value": {"__type": "Entity:x", "Attributes": 5}},
    ]
    error = assert_error(post(client, payload, key), 400, "invalid_payload")
    assert set(error["fields"]["SharedVariables"]) == {"0", "tag"}
