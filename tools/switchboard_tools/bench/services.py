"""Run every service's own benchmark, one after another, against one Kafka broker and Redis server.

Usage: python -m switchboard_tools.bench.services [--quick]   (make bench-services)
Uses KAFKA_BOOTSTRAP / REDIS_URL when set, otherwise starts a local broker and Redis for the run (and stops them).
Each benchmark prints its own figures beside the raw limit it measures in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from switchboard_tools.stack.kafka import LocalKafka
from switchboard_tools.stack.redis import LocalRedis


def benches(quick: bool) -> list[tuple[str, list[str]]]:
    """Each service's benchmark with the arguments of a full or a quick run."""
    seconds = "3" if quick else "10"
    return [
        ("chat", ["--seconds", seconds]),
        ("email", ["--seconds", seconds]),
        ("phone", ["--seconds", seconds]),
        ("router", ["--seconds", seconds] + (["--conversations", "5000"] if quick else [])),
        ("presence", ["--agents", "2000" if quick else "20000"]),
        ("gateway", ["--sockets", "2000" if quick else "20000", "--events", "20000" if quick else "200000"]),
    ]


@contextlib.contextmanager
def infrastructure() -> Iterator[tuple[str, str]]:
    """The environment's Kafka and Redis, or local ones for the length of the run."""
    if os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REDIS_URL"):
        yield os.environ["KAFKA_BOOTSTRAP"], os.environ["REDIS_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        kafka, redis = LocalKafka(Path(tmp) / "kafka", heap="1g"), LocalRedis(Path(tmp) / "redis")
        kafka.start()
        redis.start()
        try:
            yield kafka.bootstrap, redis.url
        finally:
            redis.stop()
            kafka.stop()


def main() -> int:
    """Run the benchmarks; the exit code is the number that failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs with fewer sockets and agents")
    args = parser.parse_args()
    failed = 0
    with infrastructure() as (bootstrap, redis_url):
        env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "REDIS_URL": redis_url}
        for service, bench_args in benches(args.quick):
            print(f"\n=== {service}: python -m switchboard_tools.bench.{service} {' '.join(bench_args)}", flush=True)
            result = subprocess.run([sys.executable, "-m", f"switchboard_tools.bench.{service}", *bench_args], env=env)
            failed += result.returncode != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
