"""``python -m vea_engine``: see :mod:`vea_engine.cli`."""

import sys

from .cli import main

sys.exit(main())
