"""The worker process: ``rq worker`` on the bridge's queues, after checking the settings.

``python -m workers.worker [--burst]`` refuses to start on a bad setting with one
line (``rq worker`` alone would start and then fail every job), and takes the
Redis URL and queue names from the bridge's own configuration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bridge.config import ConfigError, load_settings
from bridge.queueing import QUEUE_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
    except ConfigError as err:
        sys.exit(f"configuration error: {err}")
    from rq.cli import main as rq_main

    # Queues in priority order: people clicking first, then webhooks, then bulk syncs.
    rq_main(
        ["worker", "--url", settings.redis_url, "--with-scheduler", "--path", str(REPO_ROOT),
         "--logging_level", settings.log_level, *argv, *QUEUE_NAMES],
        prog_name="workers.worker",
    )


if __name__ == "__main__":
    main()
