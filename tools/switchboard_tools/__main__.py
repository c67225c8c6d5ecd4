"""`python -m switchboard_tools` is the `switchboard` command."""

import sys

from switchboard_tools.cli import main

sys.exit(main())
