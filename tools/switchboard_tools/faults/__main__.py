"""`python -m switchboard_tools.faults [--quick|--full] [--only NAME ...] [--write-doc]`: the fault table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from switchboard_tools.faults.doc import ROOT, write_doc
from switchboard_tools.faults.harness import KEYS, run_rows
from switchboard_tools.faults.stack import StackOptions
from switchboard_tools.faults.table import markdown_table


def main(argv: list[str] | None = None) -> int:
    """Run the selected rows, print the table, keep it as JSON under reports/; exit 1 when a loss column is not 0."""
    parser = argparse.ArgumentParser(prog="python -m switchboard_tools.faults", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="each fault once or twice (about 10 minutes)")
    size.add_argument("--full", action="store_true", help="the counts of docs/reliability.md (the default)")
    parser.add_argument("--only", nargs="+", choices=KEYS, default=[], metavar="NAME", help=", ".join(KEYS))
    parser.add_argument("--write-doc", action="store_true", help="write docs/reliability.md")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "faults")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_env_pair,
        help="more environment for every service of the stack (e.g. SB_LOG_LEVEL=INFO), repeatable",
    )
    args = parser.parse_args(argv)
    # The harness's own Kafka clients (the load generator's probe) complain at every broker fault it causes.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started = time.monotonic()
    rows = run_rows(args.run_dir, quick=args.quick, only=args.only, options=StackOptions(env=tuple(args.env)))
    took = time.monotonic() - started
    table = markdown_table(rows)
    print(table)
    out = ROOT / "reports" / f"faults-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([dataclasses.asdict(r) for r in rows], ensure_ascii=False, indent=1))
    print(f"rows kept in {out}")
    if args.write_doc:
        command = "python -m switchboard_tools.faults " + shlex.join(a for a in (argv or sys.argv[1:]))
        print(f"wrote {write_doc(rows, command.strip(), took)}")
    return 0 if all(r.clean for r in rows) else 1


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


if __name__ == "__main__":
    sys.exit(main())
