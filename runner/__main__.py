"""``python -m runner WORKFLOW.json ... --out DIR``: see :mod:`runner.headless`."""
import sys

from .headless import main

sys.exit(main())
