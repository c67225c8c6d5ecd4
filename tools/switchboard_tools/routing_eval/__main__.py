"""`python -m switchboard_tools.routing_eval` (make eval-routing): evaluate a shop's routing on its labelled
messages; exits 1 when the whole pipeline's held-out accuracy is below --min-accuracy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from switchboard_tools.routing_eval.report import evaluate


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, evaluate, print; the exit status says whether the bar was reached."""
    parser = argparse.ArgumentParser(prog="eval-routing", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("config/routing/tmall-flagship.yaml"))
    parser.add_argument("--heldout", type=Path, help="default: <config dir>/eval/<stem>.heldout.txt")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/eval-routing"))
    parser.add_argument("--min-accuracy", type=float, default=0.90)
    parser.add_argument("--compare", action="store_true", help="also measure the candidate classifiers")
    parser.add_argument("--misses", type=int, default=15, help="print this many misclassified held-out lines")
    args = parser.parse_args(argv)
    heldout = args.heldout or args.config.parent / "eval" / f"{args.config.stem}.heldout.txt"
    accuracy = evaluate(args.config, heldout, args.out, folds=args.folds, compare=args.compare, misses=args.misses)
    if accuracy < args.min_accuracy:
        print(f"FAIL: held-out accuracy {accuracy:.1%} is below {args.min_accuracy:.0%}")
        return 1
    print(f"ok: held-out accuracy {accuracy:.1%} (at least {args.min_accuracy:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
