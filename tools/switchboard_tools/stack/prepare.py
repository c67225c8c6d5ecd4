"""`python -m switchboard_tools.stack.prepare`: fetch what the local stack needs once (Kafka jars, redis-server)."""

from __future__ import annotations

import sys

from switchboard_tools.stack.kafka import ensure_jars
from switchboard_tools.stack.redis import ensure_redis_server


def main() -> int:
    """Make sure the Kafka jars are cached and redis-server is installed; say what to do when it cannot."""
    try:
        libs = ensure_jars()
        server = ensure_redis_server()
    except Exception as exc:
        print(f"switchboard: cannot prepare the local stack: {exc}", file=sys.stderr)
        return 1
    print(f"kafka jars: {libs}\nredis-server: {server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
