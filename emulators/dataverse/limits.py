"""Service protection limits per caller (api-limits.md): requests per sliding window and
concurrent requests, both answered with 429 + ``Retry-After`` and Dataverse's error codes."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ApiError


class ServiceProtection:
    def __init__(
        self, requests_per_window: int, window_seconds: float, max_concurrent: int
    ) -> None:
        self._lock = threading.Lock()
        self.requests_per_window = requests_per_window
        self.window_seconds = window_seconds
        self.max_concurrent = max_concurrent
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._active: dict[str, int] = defaultdict(int)

    def configure(
        self,
        requests_per_window: int | None = None,
        window_seconds: float | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        with self._lock:
            if requests_per_window is not None:
                self.requests_per_window = int(requests_per_window)
            if window_seconds is not None:
                self.window_seconds = float(window_seconds)
            if max_concurrent is not None:
                self.max_concurrent = int(max_concurrent)
            self._hits.clear()

    @contextmanager
    def admit(self, caller: str) -> Iterator[None]:
        """Count one request for ``caller`` for its whole duration, or raise a 429 ApiError."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[caller]
            while hits and hits[0] <= now - self.window_seconds:
                hits.popleft()
            if self._active[caller] >= self.max_concurrent:
                raise ApiError(
                    429,
                    "0x80072326",
                    f"Number of concurrent requests exceeded the limit of {self.max_concurrent}.",
                    {"Retry-After": "1"},
                )
            if len(hits) >= self.requests_per_window:
                wait = max(1, math.ceil(hits[0] + self.window_seconds - now))
                window = _number(self.window_seconds)
                raise ApiError(
                    429,
                    "0x80072322",
                    f"Number of requests exceeded the limit of "
                    f"{self.requests_per_window} over time window of {window} seconds.",
                    {"Retry-After": str(wait)},
                )
            hits.append(now)
            self._active[caller] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active[caller] -= 1

    def remaining(self, caller: str) -> int:
        with self._lock:
            return max(0, self.requests_per_window - len(self._hits[caller]))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
