"""`python -m switchboard`: the service image's commands, `topics` and `replay` (switchboard.cli)."""

import sys

from switchboard.cli import main

sys.exit(main())
