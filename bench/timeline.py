"""Timeline endpoint latency: ``GET /api/v1/records/<entity>/<id>/activities``, cold and warm.

The real bridge under gunicorn (production settings) with a real Redis and database, the
Dataverse emulator for sign-in (JWKS, role lookup) and the ActiveCampaign emulator over HTTP,
seeded with ``--records`` linked leads of ``--activities`` activities each.

* cold: the first read of each record (the bridge calls ActiveCampaign ``/activities``);
* warm: further reads of the same records (the per-contact cache answers).

Requests are sequential from one client, so the figures are latencies, not throughput.

    .venv/bin/python -m bench.timeline --records 200

Writes the figures into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import uuid

import redis
import requests

from bench.harness import gunicorn, machine_line, write_section
from bridge.connections import create_connection
from bridge.crypto import SecretBox, new_secret_key
from bridge.db import Database
from bridge.localredis import ensure_redis
from bridge.models import LinkStatus, RecordLink

BENCH_REDIS_DB = 13
CLIENT_ID = "11111111-2222-4333-8444-555555555555"
CLIENT_SECRET = "bench-secret"
AC_KEY = "bench-ac-key"
KINDS = [
    ("Log", "sent"), ("Log", "open"), ("LinkData", "click"), ("SubscriberSeries", "start"),
    ("SubscriberTag", "add"), ("SubscriberList", "subscribe"), ("TrackingLog", ""),
]


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def _seed(ac, database_url: str, secret_key: str, dataverse, records: int, activities: int):
    campaign = ac.seed_campaign("Spring newsletter", links=["https://example.com/spring"])
    automation = ac.seed_automation("Welcome series")
    data = {"campaign": campaign, "name": "Spring newsletter", "subject": "Spring",
            "url": "https://example.com/spring", "automation": automation, "tag": "VIP",
            "list": "1", "type": "Page visit", "value": "https://example.com/pricing"}
    now = dt.datetime.now(dt.UTC)
    db = Database(database_url)
    db.upgrade()
    record_ids = []
    with db.session() as session:
        connection = create_connection(
            session, SecretBox(secret_key.encode()), dataverse_url=dataverse.url,
            dataverse_org_id=dataverse.org_id, tenant_id=dataverse.tenant_id,
            ac_api_url=ac.url, ac_api_key=AC_KEY,
        )
        session.flush()
        for n in range(records):
            contact_id = ac.seed_contact(f"bench{n}@example.com", firstName=f"B{n}")
            for i in range(activities):
                rtype, action = KINDS[i % len(KINDS)]
                ac.seed_activity(contact_id, rtype, action, data,
                                 when=now - dt.timedelta(minutes=i))
            record_id = str(uuid.uuid4())
            record_ids.append(record_id)
            session.add(RecordLink(
                connection_id=connection.id, entity="lead", dynamics_id=record_id,
                ac_contact_id=contact_id, email=f"bench{n}@example.com",
                status=LinkStatus.SYNCED,
            ))
    db.engine.dispose()
    return record_ids


def _measure(url: str, headers: dict, record_ids: list[str], rounds: int) -> list[float]:
    session = requests.Session()
    latencies = []
    for _ in range(rounds):
        for record_id in record_ids:
            started = time.perf_counter()
            response = session.get(
                f"{url}/api/v1/records/lead/{record_id}/activities", headers=headers, timeout=30
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or not response.json()["items"]:
                raise RuntimeError(f"unexpected answer {response.status_code}: {response.text}")
    return latencies


def _row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values):,} | {_percentile(values, 50):.1f} | "
        f"{_percentile(values, 95):.1f} | {statistics.fmean(values):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--activities", type=int, default=30)
    parser.add_argument("--warm-rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()

    from emulators.activecampaign import ActiveCampaignEmulator
    from emulators.dataverse import DataverseEmulator

    server_url, _proc = ensure_redis("redis://127.0.0.1:6379/0")
    redis_url = f"{server_url.rsplit('/', 1)[0]}/{BENCH_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    workdir = tempfile.mkdtemp(prefix="bench-timeline-")
    database_url = f"sqlite:///{workdir}/bench.db"
    secret_key = new_secret_key()

    dataverse = DataverseEmulator(apps={CLIENT_ID: CLIENT_SECRET}).start()
    # The account's 5/s limit would make the cold figures a measure of the limiter alone.
    ac = ActiveCampaignEmulator(api_key=AC_KEY, requests_per_second=10_000).start()
    try:
        record_ids = _seed(ac, database_url, secret_key, dataverse, args.records,
                           args.activities)
        oid = str(uuid.uuid4())
        dataverse.add_system_user("Bench Seller", oid, roles=["ActiveCampaign User"])
        headers = {
            "Authorization": f"Bearer {dataverse.mint_user_token(oid, aud=CLIENT_ID)}",
            "X-Dynamics-Org-Url": dataverse.url,
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "BRIDGE_SECRET_KEY": secret_key,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ENTRA_CLIENT_ID": CLIENT_ID,
            "ENTRA_CLIENT_SECRET": CLIENT_SECRET,
            "ENTRA_AUTHORITY_HOST": dataverse.authority_host,
            "BRIDGE_CA_BUNDLE": str(dataverse.ca_bundle),
            "BRIDGE_ALLOW_LOOPBACK_HOSTS": "1",
            "AC_REQUESTS_PER_SECOND": "10000",
            "LOG_LEVEL": "WARNING",
        }
        with gunicorn("bridge.wsgi:app", env) as url:
            # One request signs the user in (JWKS + role lookup are cached from then on).
            requests.get(f"{url}/api/v1/me", headers=headers, timeout=30).raise_for_status()
            ac.reset_log()
            cold = _measure(url, headers, record_ids, 1)
            ac_calls = len(ac.request_log)
            warm = _measure(url, headers, record_ids, args.warm_rounds)
            warm_calls = len(ac.request_log) - ac_calls
    finally:
        ac.stop()
        dataverse.stop()

    table = "\n".join(
        [
            "| reads | requests | p50 ms | p95 ms | mean ms |",
            "|---|---|---|---|---|",
            _row("cold (first read of a record: ActiveCampaign `/activities`)", cold),
            _row("warm (per-contact cache)", warm),
        ]
    )
    command = (
        f".venv/bin/python -m bench.timeline --records {args.records} "
        f"--activities {args.activities} --warm-rounds {args.warm_rounds}"
    )
    body_md = f"""
Command: `{command}`

Machine: {machine_line()}; client, bridge and emulators share it. The bridge runs under gunicorn
with `gunicorn.conf.py`; every request carries a real Entra token (signature checked against the
emulator's JWKS; the role lookup is cached). {args.records} linked leads with {args.activities}
activities each; a page is 20 items with the campaign and automation side-loads. ActiveCampaign
calls during the cold pass: {ac_calls:,}; during the warm passes: {warm_calls:,}. The emulator's
rate limit is lifted so the figures show the bridge, not the account's 5 requests/second (at that
limit a burst of cold reads queues behind the shared limiter).

{table}
"""
    print(body_md)
    if not args.no_write:
        write_section("Timeline endpoint", body_md)


if __name__ == "__main__":
    main()
