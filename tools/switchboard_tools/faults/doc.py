"""docs/reliability.md: the fault table as last measured, how to read it, and the command that made it."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path

from switchboard_tools.faults.harness import ORDER
from switchboard_tools.faults.table import COLUMNS, FaultRow

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "reliability.md"

HOW_TO_READ = """\
## How to read it

Each row is one kind of fault. While it is injected (the `injections` column says how often), the load generator
runs a steady sale through every channel (chat widget and marketplace webhook, e-mail over SMTP, phone) of three
shops with more agents than the load needs, on a local stack with two router replicas; simulated desktops reconnect
with `resume_after` when their socket drops, as docs/desktop-protocol.md tells a desktop to. The harness records
what every actor saw: each message a channel acknowledged, each event each desktop applied (with its seq, epoch
and message), each agent's load against capacity in Redis (sampled every 0.5 s), and when each fault began and
was healed. The columns:

- **acked**: customer messages a channel acknowledged during the row (widget `ack`, webhook 200, SMTP 250,
  phone `ack`).
- **lost**: acknowledged and never on the desk of the agent owning the conversation, 60 s after the last one was
  sent (those still queued then count here too, the note says how many).
- **duplicated**: on one owner's desk twice under one ownership epoch (docs/invariants.md, invariant 1).
- **double-owned**: conversations that reached two agents' desks under one epoch (invariant 2).
- **over-capacity**: samples of an agent holding more conversations of a channel than their capacity allows.
- **reordered**: messages that reached their owner after a later message of the same conversation.
- **recovery**: over the injections, the longest wait of a message the fault held up: from the later of the fault
  and its sending to its delivery on a desk (baseline delivery takes well under a second; the note gives the
  median over injections and, in rows measured since 2026-12-07 06:05, how many recovered within 3 s). Not a
  failover figure alone: it includes the restart of what was killed. For the router, the failover alone (a
  replica SIGKILLed, the other takes its partitions) is measured by `tests/integration/test_router_failover.py`;
  a kill here also restarts the router at once, and its joining the group again is a second rebalance. For each
  injection that held a message 3 s or more, the note names the message and where it waited, in seconds from the
  later of the fault and its sending: on the inbound topic, first routing decision, on the desk (agent, event),
  and its conversation's routing events in that time (e.g. `offered +0.1, accepted +0.7, timed_out +5.2` is an
  accept that did not take).
- capacity samples of an agent that presence has not written back yet after Redis lost its data are counted
  apart ("more before presence wrote the agent back"): Redis then holds no capacity to compare with, and the
  router gives no work to an agent that presence has not written.

The note also counts messages that reached a desk although their channel never acknowledged them (the customer
was told "retry later", or gave up waiting for the answer): not a loss, and what docs/chat-widget.md,
docs/email.md and docs/phone-api.md say a timed-out acknowledgement means (it may have been stored; a resend with
the same id is safe). "desk reconnects": sockets the simulated desktops opened again after a drop.

For the input sweeps (malformed, isolation) the columns count what their note says (e.g. requests sent as
`acked`, 5xx answers, sockets left without a close code or crashed processes, cross-tenant leaks as `lost`).
Goal: zero in every loss column. A non-zero figure stays in the table until a later run measures it gone.
"""


TABLE_START = "| " + " | ".join(COLUMNS) + " |"
RUN_LINE = re.compile(r"^- `(?P<stamp>[^`]+)`: ")


def render(rows: Sequence[FaultRow], command: str, took_s: float, previous: str = "", stamp: str | None = None) -> str:
    """The whole page: `rows` measured by `command` (at `stamp`, default now); rows of `previous` (the page as it
    was) that were not measured again are kept, each with the run that measured it."""
    stamp = stamp or time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    fresh = {row.fault: _line(row, stamp) for row in rows}
    kept, runs = _previous(previous)
    lines = {**{fault: line for fault, line in kept.items() if fault not in fresh}, **fresh}
    order = [*fresh, *(fault for fault in kept if fault not in fresh)]
    order.sort(key=lambda fault: ORDER.index(fault) if fault in ORDER else len(ORDER))
    runs[stamp] = f"- `{stamp}`: `{command}` ({took_s / 60:.0f} min; {machine})"
    used = {stamp for line in lines.values() for stamp in re.findall(r"\[run ([^\]]+)\]", line)}
    return "\n".join(
        [
            "# Reliability: faults under load, measured",
            "",
            "Written by the fault harness (`tools/switchboard_tools/faults/`, `make faults`); do not edit the table by",
            "hand, run the harness again (`--write-doc`; with `--only` it measures those rows again and keeps the",
            "others). Each row names the run that measured it:",
            "",
            *(line for when, line in runs.items() if when in used),
            "",
            TABLE_START,
            "|" + "---|" * len(COLUMNS),
            *(lines[fault] for fault in order),
            "",
            HOW_TO_READ,
        ]
    )


def _line(row: FaultRow, stamp: str) -> str:
    note = f"{row.note} [run {stamp}]".strip()
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in [*row.cells()[:-1], note]) + " |"


def _previous(page: str) -> tuple[dict[str, str], dict[str, str]]:
    """The table lines (by fault) and run lines (by stamp) of the page as it was."""
    rows: dict[str, str] = {}
    runs: dict[str, str] = {}
    in_table = False
    for line in page.splitlines():
        if line == TABLE_START:
            in_table = True
        elif in_table and line.startswith("|---"):
            continue
        elif in_table and line.startswith("| "):
            rows[line[2:].split(" | ", 1)[0]] = line
        elif in_table:
            in_table = False
        elif match := RUN_LINE.match(line):
            runs[match["stamp"]] = line
    return rows, runs


def write_doc(
    rows: Sequence[FaultRow], command: str, took_s: float, path: Path = DOC, stamp: str | None = None
) -> Path:
    """Write the page, keeping the rows of the page as it was that `rows` do not measure again (`stamp`: when the
    rows were measured, default now); return its path."""
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(render(rows, command, took_s, previous, stamp), encoding="utf-8")
    return path
