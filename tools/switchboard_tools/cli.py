"""The `switchboard` command: run the local stack, the load test, the benchmarks and the service commands."""

from __future__ import annotations

import argparse
import sys

from switchboard import cli as service_cli
from switchboard_tools.loadgen import commands as loadgen_commands
from switchboard_tools.stack import widget_url


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `switchboard` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:
        return service_cli.run_replay(argv[1:])
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    service_cli.add_subcommands(sub)
    sub.add_parser("up", help="start Kafka, Redis, the topics and every service until Ctrl-C")
    loadgen_commands.add_subcommands(sub)
    widget_url.add_subcommand(sub)
    args = parser.parse_args(argv)
    if args.command in loadgen_commands.COMMANDS:
        return loadgen_commands.run_subcommand(args)
    if args.command == widget_url.COMMAND:
        return widget_url.run_subcommand(args)
    if args.command == "up":
        from switchboard_tools.stack.up import up

        return up()
    return service_cli.run_subcommand(args)


if __name__ == "__main__":
    sys.exit(main())
