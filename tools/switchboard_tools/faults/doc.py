"""docs/reliability.md: the fault table as last measured, how to read it, and the command that made it."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from switchboard_tools.faults.table import FaultRow, markdown_table

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
  median over injections). Not a failover figure alone: it includes the restart of what was killed.

The note also counts messages that reached a desk although their channel never acknowledged them (the customer
was told "retry later", or gave up waiting for the answer): not a loss, and what docs/chat-widget.md,
docs/email.md and docs/phone-api.md say a timed-out acknowledgement means (it may have been stored; a resend with
the same id is safe). "desk reconnects": sockets the simulated desktops opened again after a drop.

For the input sweeps (malformed, isolation) the columns count what their note says (e.g. requests sent as
`acked`, 5xx answers, sockets left without a close code or crashed processes, cross-tenant leaks as `lost`).
Goal: zero in every loss column. A non-zero figure stays in the table until a later run measures it gone.
"""


def render(rows: Sequence[FaultRow], command: str, took_s: float) -> str:
    """The whole page."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return "\n".join(
        [
            "# Reliability: faults under load, measured",
            "",
            "Written by the fault harness (`tools/switchboard_tools/faults/`, `make faults`); do not edit the table by",
            "hand, run the command again.",
            "",
            f"Measured {when} on {machine}, in {took_s / 60:.0f} minutes, with:",
            "",
            "```sh",
            command,
            "```",
            "",
            markdown_table(rows),
            "",
            HOW_TO_READ,
        ]
    )


def write_doc(rows: Sequence[FaultRow], command: str, took_s: float, path: Path = DOC) -> Path:
    """Write the page; return its path."""
    path.write_text(render(rows, command, took_s), encoding="utf-8")
    return path
