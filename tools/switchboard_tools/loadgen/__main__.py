"""`python -m switchboard_tools.loadgen`: one load-test run from the environment (SB_LOADGEN_*), then exit.

Exit status 0 when the accounting balanced (nothing lost, duplicated or unexpected), 1 when it did not; deployed
as a Kubernetes Job it runs against the stack at SB_LOADGEN_*_URL with SB_LOADGEN_START_STACK=false.
"""

from __future__ import annotations

import sys

from switchboard.runtime.logs import configure_logging
from switchboard_tools.loadgen.run import load_test
from switchboard_tools.loadgen.settings import LoadgenSettings


def main() -> int:
    """Run the configured scenario and print the summary."""
    settings = LoadgenSettings()
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    outcome = load_test(settings)
    print(outcome.summary)
    print(f"report: {outcome.folder / 'index.html'}")
    return 0 if outcome.balanced else 1


if __name__ == "__main__":
    sys.exit(main())
