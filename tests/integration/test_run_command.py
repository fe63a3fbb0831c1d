"""The README's run command: sandbox mode comes up and a lead reaches ActiveCampaign."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sandbox_run_command_syncs_a_new_lead_within_seconds(tmp_path, redis_url):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ENTRA_", "BRIDGE_", "DATABASE_"))
    }
    env.update(REDIS_URL=redis_url, BRIDGE_INSTANCE_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    port = _free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "bridge.launcher", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in launcher.stdout], daemon=True
    ).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("Try it:" in line for line in output):
            assert launcher.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "sandbox did not come up:\n" + "".join(output)
            with contextlib.suppress(queue.Empty):
                output.append(lines.get(timeout=1))
        banner = "".join(output)
        assert f"http://127.0.0.1:{port}" in banner
        assert "Dataverse emulator Web API" in banner and "ActiveCampaign emulator API" in banner

        demo = subprocess.run(
            [sys.executable, "-m", "bridge.sandbox", "demo-lead", "--email", "readme@example.com",
             "--state-dir", str(tmp_path / "sandbox"), "--timeout", "20"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "Arrived in ActiveCampaign as contact" in demo.stdout
    finally:
        os.killpg(launcher.pid, signal.SIGTERM)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
