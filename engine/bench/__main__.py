"""``python -m engine.bench``: the benchmark's command line."""

import sys

from .cli import main

sys.exit(main())
