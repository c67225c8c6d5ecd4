"""The malformed-input sweep (faults/malformed.py) on a fault stack of its own: hostile JSON, lone surrogates,
control characters, broken UTF-8 and broken mail at every way in (the e-mail webhook signed, the desk before and
after its auth) get a 4xx, an SMTP reply, an error frame or a documented close code; no 5xx, no socket left
hanging or closed without a code, no process exits. The CI-sized run; `make faults` runs it with 10,000 inputs."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from switchboard.runtime.input_limits import InputRefused, parse_json
from switchboard_tools.faults.malformed import VALID, Tally, hostile_bodies, malformed_sweep
from switchboard_tools.faults.stack import fault_stack

pytestmark = pytest.mark.broker


def test_the_corpus_is_hostile_for_every_channel() -> None:
    for name, valid in VALID.items():
        bodies = hostile_bodies(random.Random(1), valid)
        refused = 0
        for body in bodies:
            try:
                parse_json(body, max_bytes=64 * 1024)
            except InputRefused:
                refused += 1
        # Most are not JSON text at all; the rest are JSON a schema refuses (a list, null, wrong types).
        assert refused >= len(bodies) - 4, name


def test_malformed_inputs_across_every_channel_get_documented_answers(tmp_path: Path) -> None:
    tally = Tally()
    with fault_stack(tmp_path / "stack") as stack:
        row = asyncio.run(malformed_sweep(stack, 400, tally=tally))
    assert row.injections >= 400, row.note
    assert (row.lost, row.duplicated, row.double_owned, row.over_capacity) == (0, 0, 0, 0), row.note
    assert row.acked == row.injections, row.note
    # The e-mail webhook's posts are signed, so they reach its parser: refused there (422, 415 with a DLQ record)
    # or taken, never turned away at the signature check.
    assert 401 not in tally.email_statuses, tally.email_statuses
    assert tally.email_statuses[422] and tally.email_statuses[415], tally.email_statuses
    assert tally.email_dead_letters > 0, row.note
    # Hostile frames reached authenticated desks, each answered (an error frame, or a documented close).
    assert tally.good_by_channel["desk-authed"] >= 8, tally.good_by_channel
