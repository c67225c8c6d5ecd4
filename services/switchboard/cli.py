"""The `switchboard` command: run the local stack and its tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `switchboard` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:
        # The replay tool parses its own arguments (switchboard replay --help).
        from switchboard.router.replay import main as replay

        return replay(argv[1:])
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("replay", help="replay a recorded day against a routing config, offline (router)")
    sub.add_parser("up", help="start Kafka, Redis, the topics and every service until Ctrl-C")
    topics = sub.add_parser("topics", help="create the topics on KAFKA_BOOTSTRAP")
    topics.add_argument("--partitions", type=int, default=None, help="override the production partition counts")
    topics.add_argument(
        "--replication",
        type=int,
        default=int(os.environ.get("SB_TOPIC_REPLICATION", "1")),
        help="replication factor (3 on a production cluster; env SB_TOPIC_REPLICATION)",
    )
    from switchboard.loadgen.commands import COMMANDS as LOADGEN_COMMANDS
    from switchboard.loadgen.commands import add_subcommands, run_subcommand

    add_subcommands(sub)
    args = parser.parse_args(argv)
    if args.command in LOADGEN_COMMANDS:
        return run_subcommand(args)
    if args.command == "up":
        from switchboard.stack.up import up

        return up()
    if args.command == "topics":
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        specs = Topics(os.environ.get("SB_TOPIC_PREFIX", "")).specs(args.partitions)
        asyncio.run(ensure_topics(bootstrap, specs, replication=args.replication))
        print("\n".join(s.name for s in specs))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
