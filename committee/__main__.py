"""``python -m committee``: the command line (committee.app.cli)."""

import sys

from committee.app.cli import main

sys.exit(main())
