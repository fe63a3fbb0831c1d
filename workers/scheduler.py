"""The scheduler process: RQ cron, with exactly one active scheduler per Redis.

Several scheduler processes may be started (a second machine, a restart that
overlaps the old process); a Redis lease makes all but one wait, so every
scheduled job is enqueued once.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid

from rq.cron import CronScheduler

from bridge.config import ConfigError
from bridge.queueing import BULK_QUEUE
from bridge.runtime import get_runtime
from workers import tasks

LEASE_KEY = "bridge:scheduler:lease"
LEASE_SECONDS = 30

log = logging.getLogger("workers.scheduler")


class Lease:
    """A renewable Redis lease; ``acquire`` blocks until this process holds it."""

    def __init__(self, redis, key: str = LEASE_KEY, ttl: int = LEASE_SECONDS) -> None:
        self.redis, self.key, self.ttl = redis, key, ttl
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()

    def acquire(self, poll: float = 5.0) -> None:
        while not self.redis.set(self.key, self.token, nx=True, ex=self.ttl):
            log.info("another scheduler holds the lease; waiting")
            time.sleep(poll)
        threading.Thread(target=self._renew, daemon=True).start()

    def _renew(self) -> None:
        renew = self.redis.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end"
        )
        while not self.lost.is_set():
            time.sleep(self.ttl / 3)
            if not renew(keys=[self.key], args=[self.token, self.ttl]):
                log.error("scheduler lease lost; exiting so a single scheduler remains")
                self.lost.set()


def build_scheduler(redis) -> CronScheduler:
    scheduler = CronScheduler(connection=redis, name=f"bridge-scheduler-{uuid.uuid4().hex[:6]}")
    # Safety net for the real-time path: records left pending (global sync off,
    # a job lost with Redis) are enqueued again once a minute.
    scheduler.register(tasks.requeue_pending, BULK_QUEUE, cron="* * * * *")
    # Initial syncs whose worker died are resumed from their checkpoint.
    scheduler.register(tasks.resume_syncs, BULK_QUEUE, cron="* * * * *")
    # Scheduled (change-tracking) syncs of the connections that are due.
    scheduler.register(tasks.enqueue_due_syncs, BULK_QUEUE, cron="* * * * *")
    return scheduler


def main() -> None:
    try:
        runtime = get_runtime()
    except ConfigError as err:
        sys.exit(f"configuration error: {err}")
    logging.basicConfig(level=runtime.settings.log_level, format="%(levelname)s %(message)s")
    lease = Lease(runtime.redis)
    lease.acquire()
    scheduler = build_scheduler(runtime.redis)
    threading.Thread(
        target=lambda: (lease.lost.wait(), scheduler._request_stop(None, None)), daemon=True
    ).start()
    log.info("scheduler started")
    scheduler.start()
    sys.exit(1 if lease.lost.is_set() else 0)


if __name__ == "__main__":
    main()
