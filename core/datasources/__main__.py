"""``python -m datasources`` is the ``datasources`` command."""

import sys

from .cli import main

sys.exit(main())
