"""`switchboard up` brings Kafka, Redis and every service to ready, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from switchboard_tools.stack.up import NOT_STARTED_BY_UP, existing_services

pytestmark = pytest.mark.broker


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes once its parent reaps it; up reaps all of its children.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_up_starts_everything_within_90s_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP", "REDIS_URL"}}
    env["SB_RUN_DIR"] = str(tmp_path)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard_tools", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    endpoints_file = tmp_path / "endpoints.json"
    try:
        while not endpoints_file.exists():
            assert proc.poll() is None, f"up exited early: {proc.stdout.read() if proc.stdout else ''}"
            assert time.monotonic() - started < 90, "stack not healthy within 90 s"
            time.sleep(0.2)
        took = time.monotonic() - started
        endpoints = json.loads(endpoints_file.read_text())
        # Every service, and the order service the bot's lookups go to (docs/order-lookup.md).
        expected = {n for n in existing_services() if n not in NOT_STARTED_BY_UP} | {"orders"}
        assert set(endpoints["services"]) == expected
        for name, svc in endpoints["services"].items():
            assert httpx.get(f"{svc['http']}/readyz", timeout=5).status_code == 200, name
            assert "sb_" in httpx.get(f"{svc['http']}/metrics", timeout=5).text or name
        infra = list(endpoints["infrastructure_pids"].values())
        assert len(infra) == 2 and all(_alive(pid) for pid in infra), "Kafka and Redis started by up"
    finally:
        # A person often presses Ctrl-C twice; the second must not upset the orderly stop.
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "switchboard is up" in out and "switchboard stopped" in out
    pids = [svc["pid"] for svc in endpoints["services"].values()] + infra
    leftovers = [pid for pid in pids if _alive(pid)] + _processes_mentioning(str(tmp_path))
    assert not leftovers, f"processes left behind: {leftovers}"
    print(f"stack ready in {took:.1f}s with {sorted(expected)}")
