"""`python -m switchboard`: the service image's commands, `topics`, `replay` and `dlq` (switchboard.cli)."""

import sys

from switchboard.cli import main

sys.exit(main())
