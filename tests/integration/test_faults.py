"""The fault harness on a stack of its own: routers SIGKILLed and the line to Redis blackholed under load lose,
duplicate, double-assign and reorder nothing and hold no agent over capacity (docs/invariants.md, invariants 1
and 2; docs/reliability.md). The CI-sized part runs in `make test`; every fault at full count is the soak."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard_tools.faults.harness import FAULTS, run_rows
from switchboard_tools.faults.table import FaultRow

pytestmark = pytest.mark.broker


def _assert_clean(rows: list[FaultRow]) -> None:
    for row in rows:
        assert row.acked > 0, row
        assert row.injections > 0, row
        assert row.clean, row
        assert row.recovery_s is not None, row


def test_router_kills_and_a_redis_blackhole_under_load_lose_nothing(tmp_path: Path) -> None:
    rows = run_rows(tmp_path, quick=True, only=["router-kill", "redis-stall"])
    assert [r.fault for r in rows] == [f.title for f in FAULTS if f.key in ("router-kill", "redis-stall")]
    assert [r.injections for r in rows] == [2, 1]
    _assert_clean(rows)


@pytest.mark.slow
@pytest.mark.timeout(45 * 60)  # about 25 minutes on 2 cores (`make faults`); the suite's 300 s would cut it off
def test_every_fault_at_full_count(tmp_path: Path) -> None:
    rows = run_rows(tmp_path, quick=False, only=[f.key for f in FAULTS])
    assert [r.injections for r in rows] == [f.full for f in FAULTS]
    _assert_clean(rows)
