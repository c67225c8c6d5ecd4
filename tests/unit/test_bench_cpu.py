"""The bench's CPU meter (/proc) and its HDR latency summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from switchboard_tools.loadgen.benchpipe import hdr_summary
from switchboard_tools.loadgen.cpu import LOADGEN, TOTAL, CpuMeter, cpu_seconds, per_message_us


def test_cpu_seconds_of_a_busy_child_grow_and_a_gone_process_reads_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meter = CpuMeter({"busy child": child.pid, "never started": 0})
        before = meter.sample()
        assert set(before) == {"busy child", LOADGEN}
        time.sleep(0.5)
        used = meter.since(before)
        assert 0.2 < used["busy child"] <= 0.7
        assert used[LOADGEN] < used["busy child"]
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(child.pid) is None
    assert (cpu_seconds(os.getpid()) or 0) > 0


def test_per_message_is_microseconds_per_message_largest_first_with_a_total() -> None:
    figures = per_message_us({"router": 0.5, "redis": 1.5, LOADGEN: 1.0}, 10_000)
    assert list(figures) == ["redis", LOADGEN, "router", TOTAL]
    assert figures["router"] == pytest.approx(50.0)
    assert figures[TOTAL] == pytest.approx(300.0)
    assert per_message_us({"router": 1.0}, 0) == {}


def test_hdr_summary_gives_percentiles_in_ms_within_its_precision() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    found = hdr_summary(values)
    assert found["count"] == 1000
    assert found["p50"] == pytest.approx(500, rel=0.01)
    assert found["p99"] == pytest.approx(990, rel=0.01)
    assert found["p99.9"] == pytest.approx(999, rel=0.01)
    assert found["max"] == pytest.approx(1000, rel=0.01)
    empty = hdr_summary([])
    assert empty["count"] == 0 and empty["p50"] != empty["p50"]  # nan
