"""Webhooks that arrive out of order: an Update delivered before its Create.

Dataverse delivers asynchronous steps independently, so the Update of a new
record can reach the bridge first. The real payloads are captured from the
Dataverse emulator and replayed to the bridge in reverse order.
"""

from __future__ import annotations

import threading

import pytest
import requests
from flask import Flask, request

from bridge.config import load_settings
from bridge.provisioning import connect_and_register
from emulators.server import serve_in_thread
from tests.integration.conftest import AC_KEY, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def capture():
    """An HTTP endpoint that records what Dataverse would have sent to the bridge."""
    received: list[dict] = []
    lock = threading.Lock()
    app = Flask("capture")

    @app.post("/webhooks/dataverse")
    def receive():
        with lock:
            received.append(
                {
                    "body": request.get_data(),
                    "headers": dict(request.headers),
                    "query": request.query_string.decode(),
                }
            )
        return {"status": "captured"}, 202

    server = serve_in_thread(app, quiet=True)
    server.received = received
    yield server
    server.stop()


def test_an_update_delivered_before_its_create_gives_one_contact_with_the_latest_values(
    bridge_server, bridge_env, dataverse, activecampaign, sales_user, start_workers, capture
):
    # Register the org's webhooks against the capture endpoint, with the real key.
    settings = load_settings({**bridge_env, "BRIDGE_PUBLIC_URL": capture.url})
    connect_and_register(
        settings,
        dataverse_url=dataverse.url,
        org_id=dataverse.org_id,
        tenant_id=dataverse.tenant_id,
        ac_api_url=activecampaign.url,
        ac_api_key=AC_KEY,
    )
    email = "late.create@example.com"
    lead_id = sales_user.create(
        "leads", {"firstname": "Early", "lastname": "Bird", "emailaddress1": email}
    )
    sales_user.update("leads", lead_id, {"firstname": "Latest"})
    wait_until(lambda: len(capture.received) == 2)
    create, update = capture.received
    assert b'"MessageName":"Create"' in create["body"].replace(b" ", b"")
    assert b'"MessageName":"Update"' in update["body"].replace(b" ", b"")

    start_workers(1)
    for delivery in (update, create):  # the wrong order
        response = requests.post(
            f"{bridge_server.url}/webhooks/dataverse?{delivery['query']}",
            data=delivery["body"],
            headers={
                k: v
                for k, v in delivery["headers"].items()
                if k.lower().startswith("x-ms-") or k.lower() == "content-type"
            },
            timeout=10,
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "accepted"
        # Let the first job finish before the second arrives, so nothing is coalesced.
        wait_until(lambda: activecampaign.find_contact(email))

    contact = wait_until(
        lambda: (
            (c := activecampaign.find_contact(email))
            and set(c["tags"]) == {"D365: Lead", "D365: Pushed from Dynamics"}
            and c
        )
    )
    assert contact["firstName"] == "Latest"  # the worker re-read the row, whatever the order
    assert len(activecampaign.contacts()) == 1

    # The late Create finds the same values already pushed: no second write.
    def syncs() -> int:
        return sum(
            1
            for r in activecampaign.request_log
            if r["method"] == "POST" and r["path"].endswith("/contact/sync")
        )

    wait_until(lambda: not realtime_jobs_pending(bridge_env))
    assert syncs() == 1


def realtime_jobs_pending(bridge_env) -> bool:
    import redis as redis_lib
    from rq import Queue
    from rq.registry import StartedJobRegistry

    connection = redis_lib.Redis.from_url(bridge_env["REDIS_URL"])
    queue = Queue("realtime", connection=connection)
    return bool(queue.count or StartedJobRegistry(queue=queue).count)
