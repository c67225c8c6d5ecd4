"""`switchboard up` holds a run directory of its own, so stacks side by side never share Kafka's or Redis' files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard_tools.stack.up import LOOPBACK, MAX_STACKS, bind_address, claimed_run_dir, reach_address


def test_each_stack_takes_the_first_run_dir_no_running_stack_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SB_RUN_DIR", raising=False)
    with claimed_run_dir(base=tmp_path) as first, claimed_run_dir(base=tmp_path) as second:
        assert (first, second) == (tmp_path / "stack", tmp_path / "stack-2")
        assert (first / "up.lock").read_text().strip() == str(os.getpid())
    # Both let go when they stop: the next stack takes the first again.
    with claimed_run_dir(base=tmp_path) as again:
        assert again == tmp_path / "stack"


def test_a_run_dir_held_by_another_process_is_skipped_and_a_given_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SB_RUN_DIR", raising=False)
    (tmp_path / "stack").mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
            " print('held', flush=True); time.sleep(60)",
            str(tmp_path / "stack" / "up.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with claimed_run_dir(base=tmp_path) as run_dir:
            assert run_dir == tmp_path / "stack-2"
        monkeypatch.setenv("SB_RUN_DIR", str(tmp_path / "stack"))
        with pytest.raises(RuntimeError, match="another `switchboard up` runs in"), claimed_run_dir(base=tmp_path):
            pass
    finally:
        holder.kill()
        holder.communicate()
    # The holder died without cleaning up: its lock went with it.
    with claimed_run_dir(base=tmp_path) as run_dir:
        assert run_dir == tmp_path / "stack"


def test_every_run_dir_held_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SB_RUN_DIR", raising=False)
    held = [claimed_run_dir(base=tmp_path) for _ in range(MAX_STACKS)]
    for claim in held:
        claim.__enter__()
    try:
        with pytest.raises(RuntimeError, match=f"{MAX_STACKS} stacks run already"), claimed_run_dir(base=tmp_path):
            pass
    finally:
        for claim in reversed(held):
            claim.__exit__(None, None, None)


def test_the_stack_binds_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SB_UP_BIND", raising=False)
    assert bind_address() == LOOPBACK == "127.0.0.1"
    monkeypatch.setenv("SB_UP_BIND", "0.0.0.0")
    assert (bind_address(), reach_address(bind_address())) == ("0.0.0.0", LOOPBACK)
    monkeypatch.setenv("SB_UP_BIND", "127.0.0.2")
    assert reach_address(bind_address()) == "127.0.0.2"
