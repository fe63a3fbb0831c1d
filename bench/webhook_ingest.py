"""Webhook ingest: how many Dataverse webhooks per second the web process acknowledges.

Runs the real bridge under gunicorn with its production settings against a real
Redis and database, drives it from a load generator in separate processes, and
compares it with a Flask "hello world" on the same gunicorn settings (the ceiling).

    .venv/bin/python -m bench.webhook_ingest --duration 15

Writes the figures into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid

import redis

from bench.harness import gunicorn, machine_line, write_section
from bench.loadgen import LoadResult, contact_update_body, run_load
from bridge.connections import create_connection, rotate_dataverse_webhook_key
from bridge.crypto import SecretBox, new_secret_key
from bridge.db import Database
from bridge.localredis import ensure_redis

BENCH_REDIS_DB = 12


def _prepare(database_url: str, secret_key: str, org_id: str) -> str:
    db = Database(database_url)
    db.upgrade()
    with db.session() as session:
        connection = create_connection(
            session,
            SecretBox(secret_key.encode()),
            dataverse_url="https://bench.crm.dynamics.com",
            dataverse_org_id=org_id,
            tenant_id=str(uuid.uuid4()),
        )
        key = rotate_dataverse_webhook_key(connection)
    db.engine.dispose()
    return key


def _row(name: str, result: LoadResult) -> str:
    ok = sum(v for k, v in result.statuses.items() if 200 <= k < 300)
    return (
        f"| {name} | {result.rate:,.0f} | {result.percentile(50):.1f} | "
        f"{result.percentile(99):.1f} | {ok:,} | {result.requests - ok + result.errors:,} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per process")
    parser.add_argument(
        "--database-url",
        default=None,
        help="default: a fresh SQLite file (pass a postgresql:// URL to compare)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()

    server_url, _proc = ensure_redis("redis://127.0.0.1:6379/0")
    redis_url = f"{server_url.rsplit('/', 1)[0]}/{BENCH_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    workdir = tempfile.mkdtemp(prefix="bench-ingest-")
    database_url = args.database_url or f"sqlite:///{workdir}/bench.db"
    secret_key = new_secret_key()
    org_id = str(uuid.uuid4())
    webhook_key = _prepare(database_url, secret_key, org_id)
    env = {
        "PATH": "/usr/bin:/bin",
        "BRIDGE_SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }
    body = contact_update_body(org_id)
    load = dict(duration=args.duration, processes=args.processes, threads=args.threads)

    with gunicorn("bench.hello_app:app", env) as url:
        ceiling = run_load(f"{url}/webhooks/dataverse", body, **load)
    with gunicorn("bridge.wsgi:app", env) as url:
        bridge = run_load(f"{url}/webhooks/dataverse?code={webhook_key}", body, **load)
    queued = redis.Redis.from_url(redis_url).llen("rq:queue:realtime")

    table = "\n".join(
        [
            "| server | acknowledgements/s | p50 ms | p99 ms | 2xx | other/errors |",
            "|---|---|---|---|---|---|",
            _row("Flask hello world (ceiling)", ceiling),
            _row("bridge `POST /webhooks/dataverse`", bridge),
        ]
    )
    command = (
        f".venv/bin/python -m bench.webhook_ingest --duration {args.duration:g} "
        f"--processes {args.processes} --threads {args.threads}"
    )
    body_md = f"""
Command: `{command}`

Machine: {machine_line()}; load generator and server share it. gunicorn with `gunicorn.conf.py`
(gthread, `2×cores+1` workers × 4 threads). Each request is a distinct contact Update
(`RemoteExecutionContext`, about 1.5 KB) for a distinct record, so every one is authenticated,
validated, de-duplicated and enqueued on the `realtime` queue ({queued:,} jobs queued by the run).
Database: {"SQLite" if database_url.startswith("sqlite") else "PostgreSQL"}.

{table}

The bridge reaches {bridge.rate / ceiling.rate:.0%} of the ceiling.
"""
    print(body_md)
    if not args.no_write:
        write_section("Webhook ingest", body_md)


if __name__ == "__main__":
    main()
