"""`switchboard dlq list | show | redrive` (also `python -m switchboard dlq ...` in the service image).

Connects with the runtime's settings from the environment (KAFKA_BOOTSTRAP, SB_TOPIC_PREFIX and the Kafka security
settings). Exit status: 0 when it did what was asked, 1 when it could not (Kafka unreachable, no such record, a
failed transaction, or a re-drive that re-drove nothing), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TextIO

from aiokafka.errors import KafkaError

from switchboard.dlq import render
from switchboard.dlq.entries import Filter, Outcome, newest, parse_since
from switchboard.dlq.reader import DlqUnavailable, read_dlq
from switchboard.dlq.redrive import Selection, dry_run, redrive
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics

COMMAND = "dlq"
_VERBS = {
    "redriven": "re-driven",
    "would_redrive": "would re-drive",
    "skipped": "skipped",
    "refused": "refused",
    "not_found": "not found",
    "failed": "failed",
}


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dlq` with its `list`, `show` and `redrive` commands."""
    dlq = sub.add_parser(COMMAND, help="list, show and re-drive the DLQ's records (docs/dlq.md)")
    verbs = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = verbs.add_parser("list", help="the DLQ's records, newest last, PII-masked")
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=100, help="show the newest N (default 100)")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    show = verbs.add_parser("show", help="every field of one record and its original payload, PII-masked")
    show.add_argument("id", help="the dead_letter_id (first column of `dlq list`)")
    show.add_argument("--json", action="store_true", help="a JSON object instead of text")
    again = verbs.add_parser("redrive", help="send records' originals back to the topics they came from")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", metavar="ID", help="a dead_letter_id (repeatable)")
    which.add_argument("--reason", help="every record with this error_type (narrowed by the filters below)")
    _add_filters(again, reason=False)
    again.add_argument("--dry-run", action="store_true", help="say what would be re-driven, send nothing")


def _add_filters(parser: argparse.ArgumentParser, *, reason: bool = True) -> None:
    if reason:
        parser.add_argument("--reason", help="only this error_type (e.g. invalid, decode_error, too_large)")
    parser.add_argument("--service", help="only records this service dead-lettered")
    parser.add_argument("--tenant", help="only this tenant's records")
    parser.add_argument("--since", help="only records from this time: 30m, 1h, 2d or an ISO time")


def _filter(args: argparse.Namespace) -> Filter:
    since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    return Filter(args.reason or "", args.service or "", args.tenant or "", since)


def run_subcommand(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a parsed `dlq` command; the exit status."""
    settings = ServiceSettings()
    try:
        if args.dlq_command == "list":
            return asyncio.run(_list(settings, args, out, err))
        if args.dlq_command == "show":
            return asyncio.run(_show(settings, args, out, err))
        return asyncio.run(_redrive(settings, args, out, err))
    except (BrokerUnavailable, DlqUnavailable, KafkaError, ValueError) as exc:
        err.write(f"switchboard dlq: {exc}\n")
        return 1


async def _list(settings: ServiceSettings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    topics = Topics(settings.topic_prefix)
    wanted = _filter(args)
    scan = await read_dlq(settings, since=wanted.since)
    kept = [r for r in scan.records if wanted.keeps(r)]
    shown = newest(kept, args.limit)
    if args.json:
        out.write(json.dumps([render.summary(r, topics) for r in shown], ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(render.table(shown, topics) + "\n")
    if len(shown) < len(kept):
        err.write(f"{len(shown)} newest of {len(kept)} shown (--limit)\n")
    if scan.foreign:
        err.write(f"{scan.foreign} record(s) on {scan.topic} are not DeadLetters and were passed over\n")
    return 0


async def _show(settings: ServiceSettings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    topics = Topics(settings.topic_prefix)
    record = (await read_dlq(settings)).find(args.id)
    if record is None:
        err.write(f"switchboard dlq: no DeadLetter {args.id} on {topics.dlq}\n")
        return 1
    if args.json:
        out.write(json.dumps(render.detail(record, topics), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(render.show_text(record, topics) + "\n")
    return 0


async def _redrive(settings: ServiceSettings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.ids:
        if args.service or args.tenant or args.since:
            raise ValueError("--service, --tenant and --since narrow --reason; with --id name the records")
        selection = Selection(ids=args.ids)
    else:
        selection = Selection(by_filter=_filter(args))
    outcomes = await (dry_run if args.dry_run else redrive)(settings, selection)
    for o in outcomes:
        out.write(f"{_VERBS[o.verdict]:<15}{o.dead_letter_id}  {o.detail}\n")
    return _summarise(outcomes, args.dry_run, err)


def _summarise(outcomes: list[Outcome], dry: bool, err: TextIO) -> int:
    done = sum(o.verdict in ("redriven", "would_redrive") for o in outcomes)
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("skipped", "refused", "not_found", "failed")}
    rest = ", ".join(f"{n} {_VERBS[v]}" for v, n in counts.items() if n)
    verb = "would re-drive" if dry else "re-driven"
    err.write(f"{verb}: {done} of {len(outcomes)}{f' ({rest})' if rest else ''}\n")
    if done == 0:
        err.write(f"switchboard dlq: nothing {'would be ' if dry else ''}re-driven\n")
        return 1
    return 1 if counts["failed"] else 0
