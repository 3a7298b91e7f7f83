"""`python -m huedb.cli ...`."""

import sys

from huedb.cli import main

sys.exit(main())
