"""Webhook registration through the Web API against the Dataverse emulator, and the CLI."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from flask import Flask, request

from bridge.clients.dataverse import DataverseClient
from bridge.crypto import hash_secret
from bridge.mapping import webhook_columns
from bridge.registration import ENDPOINT_NAME, register_webhooks, unregister_webhooks
from tests.integration.conftest import CLIENT_ID, CLIENT_SECRET


@pytest.fixture
def receiver():
    """A stand-in for the bridge's webhook endpoint that records what Dataverse POSTs."""
    from emulators.server import serve_in_thread

    received: list[dict] = []
    lock = threading.Lock()
    app = Flask("receiver")

    @app.post("/webhooks/dataverse")
    def hook():
        with lock:
            received.append({"args": request.args.to_dict(), "body": request.get_json(force=True)})
        return "", 204

    server = serve_in_thread(app)
    server.received = received
    yield server
    server.stop()


@pytest.fixture
def client(dataverse) -> DataverseClient:
    return DataverseClient(
        dataverse.url,
        tenant_id=dataverse.tenant_id,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        authority_host=dataverse.authority_host,
        verify=dataverse.ca_bundle,
    )


def endpoints(client) -> list[dict]:
    return list(
        client.query(
            "serviceendpoints",
            select=["serviceendpointid", "name", "url", "contract", "authtype", "messageformat"],
        )
    )


def steps(client) -> list[dict]:
    return list(
        client.query(
            "sdkmessageprocessingsteps",
            select=[
                "name",
                "stage",
                "mode",
                "rank",
                "asyncautodelete",
                "supporteddeployment",
                "filteringattributes",
                "_eventhandler_value",
            ],
            filter="startswith(name,'ActiveCampaign Bridge')",
        )
    )


def test_register_twice_then_unregister(client, dataverse, receiver):
    url = receiver.url + "/webhooks/dataverse"
    first = register_webhooks(
        client, webhook_url=url, webhook_key="old-key", columns_by_entity=webhook_columns()
    )
    second = register_webhooks(
        client, webhook_url=url, webhook_key="new-key", columns_by_entity=webhook_columns()
    )

    assert first.endpoint_created and not second.endpoint_created
    assert (first.steps_created, second.steps_created, second.steps_updated) == (6, 0, 6)
    assert second.endpoint_id == first.endpoint_id
    [endpoint] = [e for e in endpoints(client) if e["name"] == ENDPOINT_NAME]
    assert (endpoint["contract"], endpoint["authtype"], endpoint["messageformat"]) == (8, 4, 2)
    assert endpoint["url"] == url
    registered = steps(client)
    assert len(registered) == 6
    for step in registered:
        assert (step["stage"], step["mode"], step["rank"]) == (40, 1, 1)
        assert step["asyncautodelete"] is True and step["supporteddeployment"] == 0
        assert step["_eventhandler_value"] == first.endpoint_id
        if "Update" in step["name"]:
            assert step["filteringattributes"].split(",") == webhook_columns()["lead"]
            assert "ac_activecampaigncontactid" not in step["filteringattributes"]

    lead_id = dataverse.create_record("lead", {"lastname": "Hook", "emailaddress1": "h@x.org"})
    [delivery] = dataverse.wait_for_deliveries(1, timeout=10)
    assert delivery["ok"]
    assert parse_qs(urlsplit(delivery["url"]).query)["code"] == ["new-key"]
    [hit] = receiver.received
    assert hit["args"] == {"code": "new-key"}
    assert hit["body"]["PrimaryEntityId"] == lead_id
    assert hit["body"]["MessageName"] == "Create"

    # An update of a column the bridge writes back does not fire the webhook.
    dataverse.update_record("lead", lead_id, {"ac_activecampaigncontactid": "7"})
    dataverse.update_record("lead", lead_id, {"firstname": "Web"})
    deliveries = dataverse.wait_for_deliveries(2, timeout=10)
    assert [d["message"] for d in deliveries] == ["Create", "Update"]

    assert unregister_webhooks(client) >= 1
    assert [e for e in endpoints(client) if e["name"] == ENDPOINT_NAME] == []
    assert steps(client) == []
    dataverse.create_record("lead", {"lastname": "Quiet"})
    assert len(dataverse.webhook_deliveries) == 2


def test_cli_registers_with_a_rotated_key(bridge_env, dataverse, client):
    from bridge.cli import cli
    from bridge.db import Database
    from bridge.models import Connection
    from bridge.runtime import set_runtime

    env = dict(bridge_env, BRIDGE_PUBLIC_URL="http://127.0.0.1:9")  # nothing listens there
    runner = CliRunner()
    set_runtime(None)
    try:
        made = runner.invoke(
            cli,
            [
                "create-connection",
                "--dataverse-url",
                dataverse.url,
                "--org-id",
                dataverse.org_id,
                "--tenant-id",
                dataverse.tenant_id,
            ],
            env=env,
        )
        assert made.exit_code == 0, made.output
        connection_id = int(made.output.strip())
        set_runtime(None)
        done = runner.invoke(
            cli, ["register-webhooks", "--connection", str(connection_id)], env=env
        )
        assert done.exit_code == 0, done.output
        assert "6 steps created" in done.output
    finally:
        set_runtime(None)

    [endpoint] = [e for e in endpoints(client) if e["name"] == ENDPOINT_NAME]
    assert endpoint["url"] == "http://127.0.0.1:9/webhooks/dataverse"
    db = Database(bridge_env["DATABASE_URL"])
    with db.session() as session:
        stored = session.get(Connection, connection_id).dataverse_webhook_key_hash
    db.engine.dispose()
    # Only the hash is stored; the key Dataverse got is the one that hashes to it.
    lead_id = dataverse.create_record("lead", {"lastname": "Key"})
    assert lead_id
    # the receiver is not running: the delivery fails, but it carries the key
    [delivery] = dataverse.wait_for_deliveries(1, timeout=15)
    key = parse_qs(urlsplit(delivery["url"]).query)["code"][0]
    assert hash_secret(key) == stored
    assert key not in done.output

    set_runtime(None)
    try:
        gone = runner.invoke(
            cli, ["unregister-webhooks", "--connection", str(connection_id)], env=env
        )
        assert gone.exit_code == 0, gone.output
    finally:
        set_runtime(None)
    assert [e for e in endpoints(client) if e["name"] == ENDPOINT_NAME] == []


def test_cli_bad_settings_exit_2():
    from bridge.cli import cli
    from bridge.runtime import set_runtime

    set_runtime(None)
    result = CliRunner().invoke(cli, ["db-upgrade"], env={"BRIDGE_SECRET_KEY": "not-base64!"})
    set_runtime(None)
    assert result.exit_code == 2
    assert "BRIDGE_SECRET_KEY" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_new_key_is_a_valid_secret_key():
    from bridge.cli import cli
    from bridge.config import load_settings

    result = CliRunner().invoke(cli, ["new-key"])
    assert result.exit_code == 0
    assert load_settings({"BRIDGE_SECRET_KEY": result.output.strip()}).secret_key
