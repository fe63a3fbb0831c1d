"""Entry point for ``python -m emulators.activecampaign`` (see ``cli.py``)."""

import sys

from .cli import main

sys.exit(main())
