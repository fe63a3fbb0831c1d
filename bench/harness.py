"""Shared set-up for benchmarks: Redis, a migrated database, gunicorn processes, reports."""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(app_path: str, env: dict[str, str], port: int | None = None):
    """Run ``app_path`` under gunicorn with the production ``gunicorn.conf.py``."""
    port = port or free_port()
    env = {**env, "PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_ACCESS_LOG": "/dev/null"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app_path],
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/healthz", timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn did not start: {proc.stderr.read()[-2000:]}"
                ) from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = model.group(1) if model else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def write_section(title: str, body: str) -> None:
    """Replace (or add) the ``## title`` section of BENCHMARKS.md."""
    text = (
        BENCHMARKS_MD.read_text()
        if BENCHMARKS_MD.exists()
        else (
            "# Benchmarks\n\n"
            "Figures from `bench/`; each section names the command that produced it.\n"
        )
    )
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(section + "\n", text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + section)
    )
    BENCHMARKS_MD.write_text(text.rstrip() + "\n")


def start_bridge_workers(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    """``count`` production worker processes (``python -m workers.worker``, settings in env)."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "workers.worker"],
            env=env, cwd=REPO_ROOT, start_new_session=True,
        )
        for _ in range(count)
    ]


def stop_processes(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM each process group we started, then SIGKILL the ones that linger."""
    for proc in procs:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class RssSampler:
    """Samples the resident memory of processes and their children (RQ forks a work horse
    per job) every ``interval`` seconds: the peak of any one process and of their sum."""

    def __init__(self, pids: list[int], interval: float = 0.5) -> None:
        import psutil

        self._psutil = psutil
        self.roots = [psutil.Process(pid) for pid in pids]
        self.interval = interval
        self.peak_process = 0
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        total = 0
        for root in self.roots:
            try:
                procs = [root, *root.children(recursive=True)]
            except self._psutil.Error:
                continue
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except self._psutil.Error:
                    continue
                total += rss
                self.peak_process = max(self.peak_process, rss)
        self.peak_total = max(self.peak_total, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()


def bench_env(
    redis_url: str, database_url: str, dataverse, client_id: str, client_secret: str
) -> dict[str, str]:
    """The environment of every bridge process in a benchmark (production settings)."""
    from bridge.crypto import new_secret_key

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BRIDGE_SECRET_KEY": new_secret_key(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ENTRA_CLIENT_ID": client_id,
        "ENTRA_CLIENT_SECRET": client_secret,
        "ENTRA_AUTHORITY_HOST": dataverse.authority_host,
        "BRIDGE_CA_BUNDLE": str(dataverse.ca_bundle),
        "BRIDGE_ALLOW_LOOPBACK_HOSTS": "1",
        "LOG_LEVEL": "WARNING",
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
