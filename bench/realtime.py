"""Real-time path: sustained changes at 5/s and bursts of 500, Dynamics to ActiveCampaign.

The real webhook path, every part a separate process or server: the Dataverse emulator
delivers its webhooks to the bridge under gunicorn (production settings), the bridge
enqueues on Redis, ``python -m workers.worker`` processes re-read the rows over the Web
API and write to the ActiveCampaign emulator at the real 5 requests/s; above 250 queued
record syncs the workers switch to bulk import (``workers.backlog``).

    .venv/bin/python -m bench.realtime --duration 60 --rate 5 --burst 500 --bursts 2

Sustained part: updates of distinct, already-synced leads (one ``contact/sync`` each, so
5/s is the API's own bound); latency from the Web API write to the moment
ActiveCampaign holds the new value. Bursts: ``--burst`` new leads created at once; the
drain time is until all of them are ActiveCampaign contacts. Exits non-zero if a change
is lost or an email is in ActiveCampaign twice.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter

import redis

from bench.harness import (
    RssSampler,
    bench_env,
    gunicorn,
    machine_line,
    percentile,
    start_bridge_workers,
    stop_processes,
    write_section,
)
from bridge.config import load_settings
from bridge.db import Database
from bridge.localredis import ensure_redis
from bridge.provisioning import connect_and_register
from bridge.queueing import REALTIME_QUEUE, get_queue
from bridge.runtime import Runtime
from emulators.activecampaign import ActiveCampaignEmulator
from emulators.dataverse import DataverseEmulator
from workers.initial_sync import initial_sync_progress, start_initial_sync

CLIENT_ID, CLIENT_SECRET = "b3c4d5e6-0000-4000-8000-00000000be6c", "bench-secret"
AC_KEY = "bench-ac-key"
BENCH_REDIS_DB = 14
BURST_HEADER = (
    "| burst | creates took | drain time | arrived | peak queue | via bulk import "
    "| `contact/sync` | AC requests | 429s |\n|---|---|---|---|---|---|---|---|---|"
)
SYNC_PATH, IMPORT_PATH = "/api/3/contact/sync", "/api/3/import/bulk_import"


class Watcher:
    """Polls the ActiveCampaign emulator; notes when each (email, firstName) appears.

    Each poll looks up only the keys still missing, with ``find_contact`` (an O(1) email
    index look-up each). ``contacts()`` would describe every contact under the store lock
    on every 5 ms poll: 8.8 ms at 1,300 contacts, which would hold the lock most of the time
    and delay the very requests whose latency is measured.
    """

    def __init__(self, emu: ActiveCampaignEmulator, interval: float = 0.005) -> None:
        self.emu, self.interval = emu, interval
        self.expected: dict[tuple[str, str], float] = {}
        self.arrived: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def expect(self, email: str, first_name: str, sent_at: float) -> None:
        with self._lock:
            self.expected[(email.lower(), first_name)] = sent_at

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter()
            with self._lock:
                pending = list(self.expected.keys() - self.arrived.keys())
            seen = []
            for email, first_name in pending:
                contact = self.emu.find_contact(email)
                if contact is not None and contact["firstName"] == first_name:
                    seen.append((email, first_name))
            with self._lock:
                for key in seen:
                    self.arrived.setdefault(key, now)
            time.sleep(self.interval)

    def missing(self, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        with self._lock:
            return [k for k in keys if k not in self.arrived]

    def wait(self, keys: list[tuple[str, str]], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.missing(keys):
                return True
            time.sleep(0.02)
        return not self.missing(keys)

    def latencies_ms(self, keys: list[tuple[str, str]]) -> list[float]:
        with self._lock:
            return [(self.arrived[k] - self.expected[k]) * 1000 for k in keys
                    if k in self.arrived]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class QueuePeak:
    """The longest the ``realtime`` queue got while it runs."""

    def __init__(self, queue) -> None:
        self.queue, self.peak = queue, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.queue.count)
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="sustained part, seconds")
    parser.add_argument("--rate", type=float, default=5.0, help="sustained changes per second")
    parser.add_argument("--burst", type=int, default=500, help="changes per burst")
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    sustained_count = round(args.duration * args.rate)

    server_url, _ = ensure_redis("redis://127.0.0.1:6379/0")
    redis_url = f"{server_url.rsplit('/', 1)[0]}/{BENCH_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    workdir = tempfile.mkdtemp(prefix="bench-realtime-")
    dataverse = DataverseEmulator(apps={CLIENT_ID: CLIENT_SECRET}).start()
    activecampaign = ActiveCampaignEmulator(api_key=AC_KEY, requests_per_second=5).start()
    env = bench_env(redis_url, f"sqlite:///{workdir}/bench.db", dataverse,
                    CLIENT_ID, CLIENT_SECRET)
    Database(env["DATABASE_URL"]).upgrade()
    run = uuid.uuid4().hex[:6]

    # The leads the sustained part updates exist before the webhooks are registered and
    # reach ActiveCampaign through an initial sync, so each update is one contact/sync.
    leads = []
    for n in range(sustained_count):
        email = f"rt-{run}-{n}@bench.example.com"
        leads.append((dataverse.create_record(
            "lead", {"firstname": "Initial", "lastname": f"Lead {n}", "emailaddress1": email}
        ), email))

    watcher = Watcher(activecampaign)
    workers: list = []
    sampler = None
    failures: list[str] = []
    sustained_keys: list[tuple[str, str]] = []
    bursts: list[dict] = []
    sustained_wall = sustained_log_from = sustained_log_to = 0
    try:
        with gunicorn("bridge.wsgi:app", env) as bridge_url:
            env["BRIDGE_PUBLIC_URL"] = bridge_url
            connection_id = connect_and_register(
                load_settings(env), dataverse_url=dataverse.url, org_id=dataverse.org_id,
                tenant_id=dataverse.tenant_id, ac_api_url=activecampaign.url,
                ac_api_key=AC_KEY, name="Bench",
            )
            runtime = Runtime(load_settings(env))
            queue = get_queue(runtime.redis, REALTIME_QUEUE)
            workers = start_bridge_workers(env, args.workers)
            sampler = RssSampler([p.pid for p in workers])
            start_initial_sync(runtime, connection_id)
            deadline = time.monotonic() + 120
            while initial_sync_progress(runtime, connection_id)["status"] != "done":
                if time.monotonic() > deadline:
                    raise RuntimeError("the initial sync of the sustained leads did not finish")
                time.sleep(0.2)
            print(f"{sustained_count} leads synced by the initial sync; sustained part: "
                  f"{sustained_count} updates at {args.rate:g}/s")
            time.sleep(1.5)  # let the initial sync's requests leave the 1 s window

            sustained_log_from = len(activecampaign.request_log)
            started = time.perf_counter()
            for n, (lead_id, email) in enumerate(leads):
                due = started + n / args.rate
                while (now := time.perf_counter()) < due:
                    time.sleep(min(due - now, 0.05))
                name = f"Sustained{n}"
                watcher.expect(email, name, time.perf_counter())
                dataverse.update_record("lead", lead_id, {"firstname": name})
                sustained_keys.append((email.lower(), name))
                if (n + 1) % max(1, round(args.rate * 5)) == 0:
                    arrived = len(sustained_keys) - len(watcher.missing(sustained_keys))
                    print(f"  {time.perf_counter() - started:5.1f} s: {n + 1} sent, "
                          f"{arrived} in ActiveCampaign, queue {queue.count}", flush=True)
            sustained_wall = time.perf_counter() - started
            if not watcher.wait(sustained_keys, 120):
                failures.append(f"{len(watcher.missing(sustained_keys))} sustained updates "
                                "never reached ActiveCampaign")
            sustained_log_to = len(activecampaign.request_log)

            for b in range(args.bursts):
                time.sleep(2)
                log_from = len(activecampaign.request_log)
                batches_before = set(activecampaign.importer.batches)
                peak = QueuePeak(queue)
                keys = []
                started = time.perf_counter()
                for n in range(args.burst):
                    email = f"burst-{run}-{b}-{n}@bench.example.com"
                    watcher.expect(email, "Burst", started)
                    dataverse.create_record("lead", {
                        "firstname": "Burst", "lastname": f"Burst {b}-{n}",
                        "emailaddress1": email,
                    })
                    keys.append((email.lower(), "Burst"))
                created = time.perf_counter() - started
                print(f"burst {b + 1}: {args.burst} leads created in {created:.1f} s; draining",
                      flush=True)
                next_print = 0.0
                deadline = time.monotonic() + args.drain_timeout
                while (missing := len(watcher.missing(keys))) and time.monotonic() < deadline:
                    if (elapsed := time.perf_counter() - started) >= next_print:
                        print(f"  {elapsed:5.1f} s: {args.burst - missing}/{args.burst} in "
                              f"ActiveCampaign, queue {queue.count}", flush=True)
                        next_print = elapsed + 5
                    time.sleep(0.1)
                lat = watcher.latencies_ms(keys)
                drained = max(lat) / 1000 if len(lat) == len(keys) else None
                # Let the workers finish what is still queued (tags, webhooks' echoes).
                settle = time.monotonic() + 30
                while queue.count and time.monotonic() < settle:
                    time.sleep(0.1)
                emails = {k[0] for k in keys}
                via_bulk = set()
                for batch_id, batch in list(activecampaign.importer.batches.items()):
                    if batch_id not in batches_before:
                        via_bulk |= {str(c.get("email", "")).lower()
                                     for c in batch["contacts"]} & emails
                window = activecampaign.request_log[log_from:]
                bursts.append({
                    "created": created, "drained": drained, "peak": peak.stop(),
                    "arrived": len(lat), "via_bulk": len(via_bulk),
                    "syncs": sum(1 for e in window if e["path"] == SYNC_PATH),
                    "imports": sum(1 for e in window
                                   if e["path"] == IMPORT_PATH and e["status"] == 200),
                    "requests": len(window),
                    "r429": sum(1 for e in window if e["status"] == 429),
                    "p50": percentile(lat, 50), "p95": percentile(lat, 95),
                })
                if drained is None:
                    failures.append(f"burst {b + 1}: {len(keys) - len(lat)} of {len(keys)} "
                                    f"leads not in ActiveCampaign after {args.drain_timeout:g} s")
                else:
                    print(f"burst {b + 1}: drained in {drained:.1f} s")
    finally:
        watcher.stop()
        if sampler is not None:
            sampler.stop()
        stop_processes(workers)
        dataverse.stop()
        activecampaign.stop()

    # Lost: a change whose value never reached ActiveCampaign (or was overwritten by an
    # older one); duplicated: an email on more than one contact.
    final_contacts = activecampaign.contacts()
    final = {(c["email"].lower(), c["firstName"]) for c in final_contacts}
    lost = [k for k in watcher.expected if k not in final]
    counts = Counter(c["email"].lower() for c in final_contacts)
    duplicated = {e: n for e, n in counts.items() if n > 1}

    lat = watcher.latencies_ms(sustained_keys)
    log = activecampaign.request_log
    sustained_log = log[sustained_log_from:sustained_log_to]
    sustained_row = (
        f"| {len(sustained_keys)} updates at {args.rate:g}/s over {sustained_wall:.1f} s | "
        f"{len(lat)} | {percentile(lat, 50):,.0f} | {percentile(lat, 95):,.0f} | "
        f"{percentile(lat, 99):,.0f} | {max(lat, default=float('nan')):,.0f} | "
        f"{statistics.mean(lat) if lat else float('nan'):,.0f} | "
        f"{sum(1 for e in sustained_log if e['status'] == 429)} |"
    )
    burst_rows = "\n".join(
        f"| {i + 1} | {b['created']:.1f} s | "
        f"{_seconds(b['drained'])} | "
        f"{b['arrived']}/{args.burst} | {b['peak']} | {b['via_bulk']} in {b['imports']} imports | "
        f"{b['syncs']} | {b['requests']} | {b['r429']} |"
        for i, b in enumerate(bursts)
    )
    command = (
        f".venv/bin/python -m bench.realtime --duration {args.duration:g} --rate {args.rate:g} "
        f"--burst {args.burst} --bursts {args.bursts} --workers {args.workers}"
    )
    peak_rss = (f"{sampler.peak_process / 2**20:,.0f} MiB one process, "
                f"{sampler.peak_total / 2**20:,.0f} MiB all") if sampler else "n/a"
    body = f"""
Command: `{command}`

Machine: {machine_line()}. Dataverse emulator → webhook (async step; the emulator delivers
them one at a time, in order) → bridge (gunicorn, production settings) → Redis →
{args.workers} `python -m workers.worker` processes → Dataverse Web API re-read →
ActiveCampaign emulator at the real 5 requests/s. Arrival is polled every 5 ms.

Sustained: updates of distinct leads already in ActiveCampaign (one `contact/sync` each, so
{args.rate:g}/s is {args.rate / 5:.0%} of the API's 5 requests/s); latency from the Web API write in
Dynamics to the new value being readable in ActiveCampaign.

| sustained | arrived | p50 ms | p95 ms | p99 ms | max ms | mean ms | 429s |
|---|---|---|---|---|---|---|---|
{sustained_row}

Bursts: {args.burst} new leads created at once (a new contact costs `contact/sync` and two tag
requests one by one; above 250 queued record syncs the workers switch to bulk import, and
the tail of the burst keeps going in bulk for 30 s after a drain; a burst of 250 or fewer
with no drain under way goes out one by one).
Drain time: from the first create until the last of them is an ActiveCampaign contact.

{BURST_HEADER}
{burst_rows}

Lost: {len(lost)}; duplicated emails: {len(duplicated)}; ActiveCampaign 429s over the whole
run: {activecampaign.count_status(429)}; most requests in any 1 s:
{activecampaign.max_requests_in_any_window(1.0)}. Peak worker RSS: {peak_rss}.
"""
    print(body)
    if not args.no_write:
        write_section("Real-time path (sustained changes and bursts)", body)
    if lost or duplicated or failures:
        print(f"FAILED: {'; '.join(failures) or 'see above'}; lost {len(lost)} "
              f"(first: {lost[:5]}), duplicated {len(duplicated)} "
              f"(first: {list(duplicated)[:5]})", file=sys.stderr)
        return 1
    return 0


def _seconds(value: float | None) -> str:
    return "NOT DRAINED" if value is None else f"{value:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
