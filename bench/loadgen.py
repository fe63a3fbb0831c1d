"""A closed-loop HTTP load generator that runs in its own processes.

Each worker thread keeps one HTTP/1.1 keep-alive connection and sends requests
back to back for a fixed duration, recording every latency. Running in separate
processes keeps the generator from sharing a GIL with what it measures.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int
    errors: int
    statuses: dict[int, int]
    duration: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


BodyFactory = Callable[[int, int], bytes]


def _worker(
    url: str, body_factory: BodyFactory, duration: float, threads: int, proc_no: int, out: mp.Queue
) -> None:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    stop_at = time.monotonic() + duration

    def run(thread_no: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        n = 0
        local_lat: list[float] = []
        local_status: dict[int, int] = {}
        local_errors = 0
        while time.monotonic() < stop_at:
            body = body_factory(proc_no * 1000 + thread_no, n)
            n += 1
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                local_lat.append((time.perf_counter() - started) * 1000)
                local_status[resp.status] = local_status.get(resp.status, 0) + 1
            except (OSError, http.client.HTTPException):
                local_errors += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.close()
        with lock:
            latencies.extend(local_lat)
            for k, v in local_status.items():
                statuses[k] = statuses.get(k, 0) + v
            errors[0] += local_errors

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, statuses, errors[0]))


def run_load(
    url: str,
    body_factory: BodyFactory,
    *,
    duration: float = 10.0,
    processes: int = 2,
    threads: int = 8,
) -> LoadResult:
    """Drive ``url`` with ``processes × threads`` keep-alive clients for ``duration`` seconds."""
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, body_factory, duration, threads, i, out))
        for i in range(processes)
    ]
    started = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - started
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    for lat, st, err in results:
        latencies.extend(lat)
        errors += err
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    return LoadResult(len(latencies), errors, statuses, min(elapsed, duration + 1), latencies)


def contact_update_body(org_id: str) -> BodyFactory:
    """A Dataverse RemoteExecutionContext for a contact Update; every call is a new operation."""

    def make(client: int, n: int) -> bytes:
        record_id = str(uuid.UUID(int=(client << 32) + n))
        step_id = "1c7d6f0e-5f4f-4d3e-9f1a-000000000001"
        context = {
            "BusinessUnitId": str(uuid.uuid4()),
            "CorrelationId": str(uuid.uuid4()),
            "Depth": 1,
            "InitiatingUserId": "75c2dd50-0000-0000-0000-000000000001",
            "InputParameters": [
                {
                    "key": "Target",
                    "value": {
                        "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                        "Attributes": [
                            {"key": "firstname", "value": f"Name {n}"},
                            {"key": "contactid", "value": record_id},
                            {"key": "modifiedon", "value": "/Date(1732780800000)/"},
                        ],
                        "EntityState": None,
                        "FormattedValues": [],
                        "Id": record_id,
                        "KeyAttributes": [],
                        "LogicalName": "contact",
                        "RelatedEntities": [],
                        "RowVersion": None,
                    },
                }
            ],
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": "Update",
            "Mode": 1,
            "OperationCreatedOn": "/Date(1732780800000)/",
            "OperationId": str(uuid.uuid4()),
            "OrganizationId": org_id,
            "OrganizationName": "unqbench",
            "OutputParameters": [],
            "OwningExtension": {
                "Id": step_id,
                "KeyAttributes": [],
                "LogicalName": "sdkmessageprocessingstep",
                "Name": None,
                "RowVersion": None,
            },
            "ParentContext": None,
            "PostEntityImages": [],
            "PreEntityImages": [],
            "PrimaryEntityId": record_id,
            "PrimaryEntityName": "contact",
            "RequestId": None,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": 40,
            "UserId": "75c2dd50-0000-0000-0000-000000000001",
        }
        return json.dumps(context).encode()

    return make
