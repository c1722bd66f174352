"""``python -m audiox_core.training`` (see :mod:`audiox_core.training.cli`)."""
import sys

from .cli import main

sys.exit(main())
