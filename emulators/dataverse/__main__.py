"""Entry point for ``python -m emulators.dataverse``."""

import sys

from .cli import main

sys.exit(main())
