"""The shared ActiveCampaign rate limiter, against a real Redis, threads and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis as redis_lib

from bridge.ratelimit import RateLimitTimeout, RedisRateLimiter, activecampaign_limiter_key

REPO_ROOT = Path(__file__).resolve().parents[2]

RATE = 5
PER = 0.5  # a short window keeps the tests quick; the logic does not depend on its length
MARGIN = 0.05


def max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
def redis_client(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


def test_key_is_per_account_and_hides_the_url():
    key = activecampaign_limiter_key("https://acme.api-us1.com/")
    assert key.startswith("ratelimit:ac:")
    assert "acme" not in key
    assert key == activecampaign_limiter_key("https://ACME.api-us1.com")
    assert key != activecampaign_limiter_key("https://other.api-us1.com")


def test_threads_never_exceed_the_rate(redis_client):
    limiter = RedisRateLimiter(redis_client, "ratelimit:test", rate=RATE, per=PER, margin=MARGIN)
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(4):
            limiter.acquire()
            now = time.monotonic()
            with lock:
                stamps.append(now)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    assert len(stamps) == 32
    assert max_in_window(stamps, PER) <= RATE
    # 32 grants at 5 per 0.55 s need at least 6 full windows after the first burst.
    assert elapsed >= 6 * (PER + MARGIN) - 0.05
    # ... and not much more: waiters sleep exactly until a slot frees.
    assert elapsed < 6 * (PER + MARGIN) + 1.5


WORKER_SCRIPT = """
import json, sys, time
import redis
from bridge.ratelimit import RedisRateLimiter
limiter = RedisRateLimiter(redis.Redis.from_url(sys.argv[1]), "ratelimit:test",
                           rate=int(sys.argv[2]), per=float(sys.argv[3]), margin=float(sys.argv[4]))
start_at = float(sys.argv[6])
while time.time() < start_at:
    time.sleep(0.001)
out = []
for _ in range(int(sys.argv[5])):
    limiter.acquire()
    out.append(time.time())
print(json.dumps(out))
"""


def test_processes_share_one_window(redis_url):
    start_at = time.time() + 1.5  # let every interpreter finish importing first
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, redis_url, str(RATE), str(PER), str(MARGIN),
             "6", str(start_at)],
            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
        for _ in range(3)
    ]
    stamps: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        stamps.extend(json.loads(out))

    assert len(stamps) == 18
    assert max_in_window(stamps, PER) <= RATE
    assert max(stamps) - min(stamps) >= 3 * (PER + MARGIN) - 0.05


def test_pause_blocks_every_process(redis_url, redis_client):
    limiter = RedisRateLimiter(redis_client, "ratelimit:test", rate=RATE, per=PER, margin=MARGIN)
    limiter.pause(1.0)
    start_at = time.time() + 0.3
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, redis_url, str(RATE), str(PER), str(MARGIN),
         "1", str(start_at)],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )
    started = time.monotonic()
    limiter.acquire()  # this thread waits too
    waited_here = time.monotonic() - started
    out, _ = proc.communicate(timeout=30)
    granted_there = json.loads(out)[0]

    assert waited_here >= 0.9
    assert granted_there >= start_at + 0.5  # the other process was held until the pause ended


def test_pause_never_shortens_a_longer_pause(redis_client):
    limiter = RedisRateLimiter(redis_client, "ratelimit:test", rate=RATE, per=PER, margin=MARGIN)
    limiter.pause(2.0)
    limiter.pause(0.2)
    assert limiter.try_acquire() > 1.5


def test_acquire_timeout(redis_client):
    limiter = RedisRateLimiter(redis_client, "ratelimit:test", rate=2, per=5.0, margin=0.0)
    limiter.acquire()
    limiter.acquire()
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        limiter.acquire(timeout=0.2)
    assert time.monotonic() - started < 0.5  # gives up at once: the wait is known to be ~5 s


def test_separate_accounts_do_not_share_slots(redis_client):
    one = RedisRateLimiter(redis_client, "ratelimit:one", rate=1, per=5.0)
    two = RedisRateLimiter(redis_client, "ratelimit:two", rate=1, per=5.0)
    assert one.try_acquire() == 0
    assert two.try_acquire() == 0
    assert one.try_acquire() > 4
