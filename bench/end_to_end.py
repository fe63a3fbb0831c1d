"""End-to-end latency: a change saved in Dynamics until ActiveCampaign holds it.

The real path, every part a separate process or server: the Dataverse emulator
delivers its webhook to the bridge under gunicorn (production settings), the
bridge enqueues, real ``rq worker`` processes re-read the row over the Web API
and write to the ActiveCampaign emulator, which enforces the real 5 requests/s.

    .venv/bin/python -m bench.end_to_end --creates 30 --updates 60

Creates cost three ActiveCampaign requests (contact/sync and two tags) and
updates one, so the sustainable rates are about 1.6 creates/s or 5 updates/s;
the benchmark stays below them (``--rate``) to measure latency, not backlog.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import redis

from bench.harness import REPO_ROOT, gunicorn, machine_line, write_section
from bridge.config import load_settings
from bridge.crypto import new_secret_key
from bridge.db import Database
from bridge.localredis import ensure_redis
from bridge.provisioning import connect_and_register
from emulators.activecampaign import ActiveCampaignEmulator
from emulators.dataverse import DataverseEmulator

CLIENT_ID, CLIENT_SECRET = "b3c4d5e6-0000-4000-8000-00000000be4c", "bench-secret"
AC_KEY = "bench-ac-key"


class ArrivalWatcher:
    """Polls the ActiveCampaign emulator and notes when each expected value first appears."""

    def __init__(self, emu: ActiveCampaignEmulator, interval: float = 0.005) -> None:
        self.emu, self.interval = emu, interval
        self.expected: dict[tuple[str, str], float] = {}  # (email, firstName) -> sent at
        self.arrived: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def expect(self, email: str, first_name: str, sent_at: float) -> None:
        with self._lock:
            self.expected[(email, first_name)] = sent_at

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter()
            seen = {(c["email"], c["firstName"]) for c in self.emu.contacts()}
            with self._lock:
                for key in self.expected.keys() - self.arrived.keys():
                    if key in seen:
                        self.arrived[key] = now
            time.sleep(self.interval)

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.arrived) == len(self.expected):
                    return
            time.sleep(0.05)

    def latencies_ms(self, keys: list[tuple[str, str]]) -> list[float]:
        return [
            (self.arrived[k] - self.expected[k]) * 1000 for k in keys if k in self.arrived
        ]

    def stop(self) -> None:
        self._stop.set()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=30)
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--create-rate", type=float, default=1.0, help="creates per second")
    parser.add_argument("--update-rate", type=float, default=3.0, help="updates per second")
    parser.add_argument("--workers", type=int, default=2, help="rq worker processes")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    server_url, _ = ensure_redis("redis://127.0.0.1:6379/0")
    redis_url = f"{server_url.rsplit('/', 1)[0]}/12"
    redis.Redis.from_url(redis_url).flushdb()
    workdir = tempfile.mkdtemp(prefix="bench-e2e-")
    dataverse = DataverseEmulator(apps={CLIENT_ID: CLIENT_SECRET}).start()
    activecampaign = ActiveCampaignEmulator(api_key=AC_KEY, requests_per_second=5).start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BRIDGE_SECRET_KEY": new_secret_key(),
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "REDIS_URL": redis_url,
        "ENTRA_CLIENT_ID": CLIENT_ID,
        "ENTRA_CLIENT_SECRET": CLIENT_SECRET,
        "ENTRA_AUTHORITY_HOST": dataverse.authority_host,
        "BRIDGE_CA_BUNDLE": str(dataverse.ca_bundle),
        "BRIDGE_ALLOW_LOOPBACK_HOSTS": "1",
        "LOG_LEVEL": "WARNING",
    }
    Database(env["DATABASE_URL"]).upgrade()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "--with-scheduler",
             "--path", str(REPO_ROOT), "--logging_level", "WARNING", "actions", "realtime"],
            env=env, cwd=REPO_ROOT, start_new_session=True,
        )
        for _ in range(args.workers)
    ]
    watcher = ArrivalWatcher(activecampaign)
    try:
        with gunicorn("bridge.wsgi:app", env) as bridge_url:
            env["BRIDGE_PUBLIC_URL"] = bridge_url
            connect_and_register(
                load_settings(env), dataverse_url=dataverse.url, org_id=dataverse.org_id,
                tenant_id=dataverse.tenant_id, ac_api_url=activecampaign.url, ac_api_key=AC_KEY,
            )
            run = uuid.uuid4().hex[:6]
            created: list[tuple[str, str]] = []
            lead_ids: list[tuple[str, str]] = []
            for n in range(args.creates):
                email = f"e2e-{run}-{n}@example.com"
                watcher.expect(email, "First", time.perf_counter())
                lead_ids.append((dataverse.create_record(
                    "lead", {"firstname": "First", "lastname": f"Lead {n}", "emailaddress1": email}
                ), email))
                created.append((email, "First"))
                time.sleep(1 / args.create_rate)
            watcher.wait_all(60)
            updated: list[tuple[str, str]] = []
            for n in range(args.updates):
                lead_id, email = lead_ids[n % len(lead_ids)]
                name = f"Updated{n}"
                watcher.expect(email, name, time.perf_counter())
                dataverse.update_record("lead", lead_id, {"firstname": name})
                updated.append((email, name))
                time.sleep(1 / args.update_rate)
            watcher.wait_all(60)
    finally:
        watcher.stop()
        for proc in workers:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=30)
        dataverse.stop()
        activecampaign.stop()

    rows = []
    for label, keys, rate in (("create", created, args.create_rate),
                              ("update", updated, args.update_rate)):
        lat = watcher.latencies_ms(keys)
        rows.append(
            f"| {label} | {len(keys)} at {rate:g}/s | {len(lat)} | {_pct(lat, 50):.0f} | "
            f"{_pct(lat, 95):.0f} | {_pct(lat, 99):.0f} | {statistics.mean(lat):.0f} |"
        )
    served = len([r for r in activecampaign.request_log if r.get("admitted", True)])
    command = (
        f".venv/bin/python -m bench.end_to_end --creates {args.creates} "
        f"--updates {args.updates} --create-rate {args.create_rate:g} "
        f"--update-rate {args.update_rate:g} --workers {args.workers}"
    )
    body = f"""
Command: `{command}`

Machine: {machine_line()}. Dataverse emulator → webhook → bridge (gunicorn, production
settings) → Redis → {args.workers} `rq worker` processes → Dataverse Web API re-read →
ActiveCampaign emulator at the real 5 requests/s. Latency is from the Web API write in
Dynamics to the moment the new value is readable in ActiveCampaign (polled every 5 ms).

| change | sent | arrived | p50 ms | p95 ms | p99 ms | mean ms |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

ActiveCampaign requests served: {served}; 429 answers: {activecampaign.count_status(429)}.
"""
    print(body)
    if not args.no_write:
        write_section("End-to-end latency (Dynamics change to ActiveCampaign write)", body)


if __name__ == "__main__":
    main()
