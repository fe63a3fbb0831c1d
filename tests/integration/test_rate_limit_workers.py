"""Acceptance: several real ``rq worker`` processes never exceed ActiveCampaign's 5 requests/s.

60 leads are seeded in the Dataverse emulator and 60 ``workers.tasks.sync_record``
jobs are queued the way the webhook endpoint queues them; three worker
processes push them through the shared Redis limiter. The ActiveCampaign
emulator enforces the real limit (5/s, 429 + Retry-After: 1) and logs every
request it served.
"""

from __future__ import annotations

import time

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from bridge.config import load_settings
from bridge.connections import create_connection
from bridge.models import LinkStatus, RecordLink
from bridge.queueing import enqueue_record_sync
from bridge.runtime import Runtime
from tests.integration.conftest import AC_KEY

pytestmark = pytest.mark.slow

LEADS = 60


@pytest.fixture
def private_redis(bridge_env):
    """A Redis of this test's own: other suites flushing the shared test database mid-run
    would delete the queued jobs and make the test fail for reasons unrelated to it."""
    from bridge.localredis import start_private_redis

    url, proc = start_private_redis()
    bridge_env["REDIS_URL"] = url
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_three_worker_processes_stay_under_the_limit(
    bridge_env, private_redis, dataverse, activecampaign, start_workers
):
    activecampaign.set_limits(requests_per_second=5, retry_after_seconds=1)
    runtime = Runtime(load_settings(bridge_env))
    with runtime.db.session() as session:
        connection_id = create_connection(
            session,
            runtime.secrets,
            dataverse_url=dataverse.url,
            dataverse_org_id=dataverse.org_id,
            tenant_id=dataverse.tenant_id,
            ac_api_url=activecampaign.url,
            ac_api_key=AC_KEY,
        ).id
    lead_ids = [
        dataverse.create_record(
            "lead",
            {"firstname": f"Lead{n}", "lastname": "Load", "emailaddress1": f"lead{n}@example.com"},
        )
        for n in range(LEADS)
    ]
    redis = redis_lib.Redis.from_url(bridge_env["REDIS_URL"])
    for lead_id in lead_ids:
        assert enqueue_record_sync(redis, connection_id, "lead", lead_id, "Create")
    activecampaign.reset_log()

    started = time.monotonic()
    procs = start_workers(3, queues=("realtime",))

    def synced() -> int:
        with runtime.db.session() as session:
            return session.scalar(
                select(func.count())
                .select_from(RecordLink)
                .where(RecordLink.status == LinkStatus.SYNCED)
            )

    deadline = time.monotonic() + 180
    while synced() < LEADS and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a worker process died"
        time.sleep(0.5)
    elapsed = time.monotonic() - started

    served = [e for e in activecampaign.request_log if e["admitted"]]
    print(
        f"{LEADS} leads in {elapsed:.1f}s: {len(served)} requests served, "
        f"{activecampaign.count_status(429)} answered 429, "
        f"peak {activecampaign.max_requests_in_any_window(1.0)} in 1 s"
    )
    assert synced() == LEADS
    contacts = activecampaign.contacts()
    assert sorted(c["email"] for c in contacts) == sorted(
        f"lead{n}@example.com" for n in range(LEADS)
    )
    assert all(set(c["tags"]) == {"D365: Lead", "D365: Pushed from Dynamics"} for c in contacts)
    assert activecampaign.max_requests_in_any_window(1.0) <= 5
    assert activecampaign.count_status(429) == 0  # the shared limiter kept every worker in line
    redis.close()
    runtime.db.engine.dispose()
