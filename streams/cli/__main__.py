"""``python -m streams.cli``: how `up`, the tests and bench/ start the commands."""

import sys

from .parser import main

sys.exit(main())
