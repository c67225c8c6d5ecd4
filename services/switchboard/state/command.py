"""`switchboard state marks | rebuild` (also `python -m switchboard state ...` in the service image).

Each service that keeps state in Redis marks a tenant once that state is there (`state/marks.py`). A Redis that
comes back empty has no marks, and the services rebuild on their own. A Redis that comes back with *some* of its
data (a host lost with the last second of an `everysec` append-only file, a replica promoted before it had every
write) keeps the marks, so nothing is rebuilt: `state rebuild` forgets a tenant's marks, and each running service
rebuilds that tenant from its sources of truth before it writes anything new for it (docs/state.md, "When Redis
loses its data"). A rebuild over state Redis kept changes what the topics say differently and leaves the rest.

Connects with the runtime's settings from the environment (REDIS_URL, SB_KEY_PREFIX and the Redis security
settings). Exit status: 0 when it did what was asked, 1 when Redis could not be reached, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TextIO

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.keys import Keys

COMMAND = "state"
# The services that mark their state (StateMarks users).
SERVICES = ("presence", "router")


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `state` with its `marks` and `rebuild` commands."""
    state = sub.add_parser(COMMAND, help="the services' state marks in Redis; rebuild a tenant's state (docs/state.md)")
    verbs = state.add_subparsers(dest="state_command", required=True)
    marks = verbs.add_parser("marks", help="which services' state of each tenant Redis holds, since when, by whom")
    marks.add_argument("--tenant", action="append", dest="tenants", required=True, help="a tenant id (repeatable)")
    marks.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    again = verbs.add_parser(
        "rebuild", help="forget a tenant's marks: its running services rebuild it from the topics and the roster"
    )
    again.add_argument("--tenant", action="append", dest="tenants", required=True, help="a tenant id (repeatable)")
    again.add_argument(
        "--service", action="append", dest="services", choices=SERVICES, help="only this service (default: all)"
    )


async def read_marks(redis: Redis, keys: Keys, tenants: list[str]) -> list[dict[str, object]]:
    """Each tenant's mark of each service: present or not, and when and by which instance it was set."""
    rows: list[dict[str, object]] = []
    for tenant in tenants:
        for service in SERVICES:
            raw = await redis.get(keys.state_mark(tenant, service))
            value = json.loads(raw) if raw else {}
            rows.append(
                {
                    "tenant": tenant,
                    "service": service,
                    "present": raw is not None,
                    "set_at": _iso(value.get("at_ms")),
                    "by": value.get("by", ""),
                    "rebuilding": bool(await redis.exists(keys.state_rebuild_lock(tenant, service))),
                }
            )
    return rows


async def forget_marks(redis: Redis, keys: Keys, tenants: list[str], services: list[str]) -> list[str]:
    """Delete the tenants' marks of the services; the names of the marks that were there."""
    forgotten = []
    for tenant in tenants:
        for service in services:
            if await redis.delete(keys.state_mark(tenant, service)):
                forgotten.append(f"{tenant}/{service}")
    return forgotten


def _iso(ms: object) -> str:
    if not isinstance(ms, int):
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    settings = ServiceSettings(service_name="state-cli")
    keys = Keys(settings.key_prefix)
    redis = redis_client(settings, max_connections=2)
    try:
        if args.state_command == "marks":
            rows = await read_marks(redis, keys, args.tenants)
            if args.json:
                print(json.dumps(rows, ensure_ascii=False, indent=2), file=out)
            else:
                print(f"{'tenant':<24} {'service':<10} {'present':<8} {'set at':<26} by", file=out)
                for r in rows:
                    state = "yes" if r["present"] else ("rebuilding" if r["rebuilding"] else "no")
                    print(
                        f"{r['tenant']!s:<24} {r['service']!s:<10} {state:<8} {r['set_at']!s:<26} {r['by']}", file=out
                    )
            return 0
        services = args.services or list(SERVICES)
        forgotten = await forget_marks(redis, keys, args.tenants, services)
        for name in forgotten:
            print(f"forgot {name}: its services rebuild it before they write for the tenant again", file=out)
        if not forgotten:
            print("no marks to forget (a service that never ran for these tenants has none)", file=out)
        return 0
    finally:
        await redis.aclose()


def run_subcommand(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run `state marks` or `state rebuild`."""
    try:
        return asyncio.run(_run(args, out))
    except (RedisError, OSError) as exc:
        print(f"switchboard state: Redis unavailable: {exc}", file=sys.stderr)
        return 1
