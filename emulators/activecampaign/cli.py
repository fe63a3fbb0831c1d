"""``python -m emulators.activecampaign``: run one emulated account until killed.

Prints a single JSON line ``{"url", "api_url", "api_key"}`` on stdout once it is listening, so a
parent process (sandbox mode) can read where to connect.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .emulator import ActiveCampaignEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--requests-per-second", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="seed demo automations, campaigns…")
    args = parser.parse_args(argv)

    emu = ActiveCampaignEmulator(
        api_key=args.api_key, requests_per_second=args.requests_per_second
    ).start(args.port)
    if args.demo:
        emu.seed_demo()
    print(json.dumps({"url": emu.url, "api_url": emu.api_url, "api_key": emu.api_key}), flush=True)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
