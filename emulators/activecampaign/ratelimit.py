"""Sliding-window limits and the request log.

AC allows 5 requests per second per account (429 + ``Retry-After`` beyond that) and separately
limits bulk imports per minute. A sliding window of admitted timestamps is the strictest reading
of "N per window": a client that passes here never bursts past the limit in any window.
Rejected requests are not admitted, so they do not use up the window.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` admissions in any ``seconds``-long window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def configure(self, limit: int | None = None, seconds: float | None = None) -> None:
        with self._lock:
            if limit is not None:
                self.limit = int(limit)
            if seconds is not None:
                self.seconds = float(seconds)

    def try_acquire(self, now: float | None = None) -> tuple[bool, int]:
        """Admit one request if the window has room; returns (admitted, remaining)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._stamps and self._stamps[0] <= now - self.seconds:
                self._stamps.popleft()
            if len(self._stamps) >= self.limit:
                return False, 0
            self._stamps.append(now)
            return True, self.limit - len(self._stamps)

    def reset(self) -> None:
        with self._lock:
            self._stamps.clear()


class RequestLog:
    """Every API request the emulator answered, 429s included, for tests and benchmarks."""

    def __init__(self) -> None:
        self._entries: list[dict] = []
        self._lock = threading.Lock()

    def add(self, entry: dict) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def count_status(self, status: int) -> int:
        return sum(1 for e in self.entries() if e["status"] == status)

    def max_in_window(self, seconds: float = 1.0) -> int:
        """Most requests admitted by the rate limiter (so not 429s) within any ``seconds`` span.

        Two requests exactly ``seconds`` apart fall in different windows, matching the limiter.
        """
        stamps = sorted(e["ts"] for e in self.entries() if e.get("admitted"))
        best, start = 0, 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best
