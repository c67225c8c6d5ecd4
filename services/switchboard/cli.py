"""`python -m switchboard`: the operational commands the service image carries (`topics`, `replay`, `dlq`,
`state`).

The `switchboard` command of a development checkout (`switchboard_tools.cli`, the tools distribution) offers these
and adds the local stack, the load test and the benchmarks, which the service image does not carry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from switchboard.dlq import command as dlq_command
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.topics import Topics
from switchboard.state import command as state_command

COMMANDS = ("replay", "topics", dlq_command.COMMAND, state_command.COMMAND)


def run_replay(argv: list[str]) -> int:
    """`replay` parses its own arguments (`switchboard replay --help`): the router's offline replay."""
    from switchboard.router.replay import main as replay

    return replay(argv)


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `replay` (for --help only: it is dispatched before parsing), `topics`, `dlq` and `state`."""
    sub.add_parser("replay", help="replay a recorded day against a routing config, offline (router)")
    topics = sub.add_parser("topics", help="create the topics on KAFKA_BOOTSTRAP")
    topics.add_argument("--partitions", type=int, default=None, help="override the production partition counts")
    topics.add_argument(
        "--replication",
        type=int,
        default=int(os.environ.get("SB_TOPIC_REPLICATION", "1")),
        help="replication factor (3 on a production cluster; env SB_TOPIC_REPLICATION)",
    )
    dlq_command.add_subcommand(sub)
    state_command.add_subcommand(sub)


def run_subcommand(args: argparse.Namespace) -> int:
    """Run `dlq`, `state`, or `topics`: create every topic with its production partition count; print their
    names."""
    if args.command == dlq_command.COMMAND:
        return dlq_command.run_subcommand(args)
    if args.command == state_command.COMMAND:
        return state_command.run_subcommand(args)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    specs = Topics(os.environ.get("SB_TOPIC_PREFIX", "")).specs(args.partitions)
    asyncio.run(ensure_topics(bootstrap, specs, replication=args.replication))
    print("\n".join(s.name for s in specs))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m switchboard`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:
        return run_replay(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m switchboard", description=__doc__)
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return run_subcommand(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
