"""The run command: web, worker and scheduler processes, plus the sandbox.

``bin/run`` ends here. With real credentials (``ENTRA_CLIENT_ID``) it only
supervises the three Procfile processes. Without them it runs in sandbox mode:
local emulators of Dataverse and ActiveCampaign, seeded with demo data, a
connection between them and the webhooks registered, so a newcomer can watch
a lead travel from Dynamics to ActiveCampaign within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from bridge.config import ConfigError, load_settings
from bridge.crypto import new_secret_key
from bridge.db import Database
from bridge.localredis import ensure_redis

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_DIR = Path(os.environ.get("BRIDGE_INSTANCE_DIR", REPO_ROOT / "instance"))


def _persistent_secret_key() -> str:
    """The sandbox's BRIDGE_SECRET_KEY, kept in instance/ so restarts can read old rows."""
    path = INSTANCE_DIR / "secret.key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(new_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


class Supervisor:
    """Starts child processes, prefixes their output, and stops them all together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self._stopping = threading.Event()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()
        self.children.append((name, proc))
        return proc

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"{name:>9} | {line}")
            sys.stdout.flush()

    def wait(self) -> int:
        """Block until a child exits or we are asked to stop; then stop everyone."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopping.set())
        exit_code = 0
        while not self._stopping.is_set():
            for name, proc in self.children:
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", flush=True)
                    exit_code = proc.returncode or 1
                    self._stopping.set()
                    break
            self._stopping.wait(0.5)
        self.stop()
        return exit_code

    def stop(self) -> None:
        for _name, proc in self.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_http(url: str, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


@click.command()
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")))
@click.option("--workers", "worker_count", type=int, default=1, help="RQ worker processes.")
def main(port: int, worker_count: int) -> None:
    """Run web, worker(s) and scheduler (and the sandbox when no credentials are set)."""
    env = dict(os.environ)
    sandbox = not env.get("ENTRA_CLIENT_ID")
    env.setdefault("PORT", str(port))
    env.setdefault("BRIDGE_PUBLIC_URL", f"http://127.0.0.1:{port}")
    if sandbox:
        env["BRIDGE_SANDBOX"] = "1"
        env.setdefault("BRIDGE_SECRET_KEY", _persistent_secret_key())
        # Emulators keep their data in memory, so the sandbox starts from an empty database.
        sandbox_db = INSTANCE_DIR / "sandbox.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sandbox_db}{suffix}").unlink(missing_ok=True)
        env.setdefault("DATABASE_URL", f"sqlite:///{sandbox_db}")
        env.setdefault("WEB_CONCURRENCY", "2")

    redis_url, _redis_proc = ensure_redis(env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    if redis_url != env.get("REDIS_URL"):
        if "REDIS_URL" in env:
            print(f"No Redis at {env['REDIS_URL']}; started a private one at {redis_url}")
        env["REDIS_URL"] = redis_url

    sandbox_env = None
    if sandbox:
        from bridge.sandbox import Sandbox

        sandbox_env = Sandbox.start(INSTANCE_DIR / "sandbox")
        env.update(sandbox_env.environment())

    try:
        settings = load_settings(env)
    except ConfigError as err:
        raise SystemExit(f"configuration error: {err}") from None
    Database(settings.database_url).upgrade()

    supervisor = Supervisor()
    python = sys.executable
    supervisor.start(
        "web", [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bridge.wsgi:app"], env
    )
    for n in range(worker_count):
        supervisor.start(
            f"worker.{n + 1}" if worker_count > 1 else "worker",
            [python, "-m", "workers.worker"],
            env,
        )
    supervisor.start("scheduler", [python, "-m", "workers.scheduler"], env)
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/readyz")
        if sandbox_env is not None:
            sandbox_env.configure_web_client(settings)
            sandbox_env.connect_bridge(settings)
            print(sandbox_env.banner(settings), flush=True)
        else:
            print(f"ActiveCampaign Bridge is up at {settings.public_url}", flush=True)
    except Exception as err:  # a broken start must not leave orphans behind
        supervisor.stop()
        raise SystemExit(f"start-up failed: {err}") from None
    code = supervisor.wait()
    if sandbox_env is not None:
        sandbox_env.stop()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
