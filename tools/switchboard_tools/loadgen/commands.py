"""The `switchboard loadtest` and `switchboard bench` subcommands (argparse only here; the work is imported late)."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS = ("loadtest", "bench")


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `loadtest` and `bench` to the `switchboard` command."""
    load = sub.add_parser("loadtest", help="run a big-sale scenario against a stack and write a report")
    load.add_argument("--scenario", default=None, help="smoke, double11 or a path to a scenario YAML (default smoke)")
    load.add_argument("--seed", type=int, default=None, help="seed of the schedule (default: the scenario's)")
    load.add_argument("--out", type=Path, default=None, help="reports folder (default reports/)")
    load.add_argument(
        "--no-stack",
        action="store_true",
        help="drive the stack at SB_LOADGEN_*_URL instead of starting one for the run",
    )
    load.add_argument(
        "--profile",
        choices=("on", "off", "both"),
        default=None,
        help="surge profile of the scenario switched on (default), off, or both runs (same seed) and a comparison",
    )
    load.add_argument("--write-config", type=Path, default=None, help="only write the run's stack config into DIR")
    load.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("OFF_DIR", "ON_DIR"),
        default=None,
        help="no run: compare two report folders already written (profile off, profile on)",
    )
    bench = sub.add_parser("bench", help="raw Kafka/Redis/websocket limits and pipeline figures on this machine")
    bench.add_argument("--seconds", type=float, default=5.0, help="length of each raw measurement")
    bench.add_argument(
        "--sockets", type=int, default=None, help="customer sockets of the open-loop phase (default 2000)"
    )
    bench.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a py-spy flame graph of each service over the maximum phase into DIR",
    )


def run_subcommand(args: argparse.Namespace) -> int:
    """Run `loadtest` or `bench`; the process exit status."""
    if args.command == "bench":
        from switchboard_tools.loadgen.bench import bench

        return bench(args.seconds, args.sockets, args.profile)
    from switchboard_tools.loadgen.run import load_test, write_config
    from switchboard_tools.loadgen.settings import LoadgenSettings

    overrides: dict[str, object] = {}
    if args.scenario is not None:
        overrides["loadgen_scenario"] = args.scenario
    if args.seed is not None:
        overrides["loadgen_seed"] = args.seed
    if args.out is not None:
        overrides["loadgen_out"] = args.out
    if args.no_stack:
        overrides["loadgen_start_stack"] = False
    if args.profile is not None:
        overrides["loadgen_profile"] = args.profile
    settings = LoadgenSettings(**overrides)  # type: ignore[arg-type]
    if args.write_config is not None:
        env = write_config(settings, args.write_config)
        print("\n".join(f"{k}={v}" for k, v in env.items()))
        return 0
    if args.compare is not None:
        from switchboard_tools.loadgen.run import compare_folders

        folder, text = compare_folders(args.compare[0], args.compare[1], settings.loadgen_out)
        print(f"{text}\ncomparison: {folder / 'index.html'}")
        return 0
    if settings.loadgen_profile == "both":
        from switchboard_tools.loadgen.run import load_test_ab

        off, on, folder, text = load_test_ab(settings)
        print(f"{off.summary}\n\n{on.summary}\n\n{text}")
        print(f"reports: {off.folder / 'index.html'}  {on.folder / 'index.html'}  comparison: {folder / 'index.html'}")
        return 0 if off.balanced and on.balanced else 1
    outcome = load_test(settings)
    print(outcome.summary)
    print(f"report: {outcome.folder / 'index.html'}")
    return 0 if outcome.balanced else 1
