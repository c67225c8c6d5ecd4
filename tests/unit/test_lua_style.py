"""Every Redis script is a `.lua` file that names its KEYS and ARGV as locals at the top.

A script reads each fixed `KEYS[n]` / `ARGV[n]` into a named local before its first `redis.call`, so a reader sees
every key it touches (and its cluster slot) in its first lines; variable-length tails (`KEYS[i]` in a loop) are
named by the file's comments. A library (functions other scripts include) reads no KEYS or ARGV at all: its
callers pass keys in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "services" / "switchboard"
FIXED = re.compile(r"\b(KEYS|ARGV)\[\d+\]")
SCRIPTS = sorted(PACKAGE_ROOT.rglob("*.lua"))


def _code(path: Path) -> list[str]:
    return [line.split("--", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 15


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(PACKAGE_ROOT)))
def test_keys_and_args_are_named_before_the_first_call(path: Path) -> None:
    lines = _code(path)
    if any(line.startswith("local function") for line in lines):  # a library
        assert not any(FIXED.search(line) for line in lines), "a library takes its keys as arguments"
        return
    first_call = next((i for i, line in enumerate(lines) if "redis.call" in line), len(lines))
    late = [line.strip() for line in lines[first_call:] if FIXED.search(line)]
    assert not late, f"KEYS/ARGV read after the first redis.call: {late}"
    for line in lines[:first_call]:
        if FIXED.search(line):
            assert line.lstrip().startswith("local "), f"not a named local: {line.strip()}"


def test_no_python_module_keeps_lua_in_a_string() -> None:
    offenders = [
        str(path.relative_to(PACKAGE_ROOT))
        for path in PACKAGE_ROOT.rglob("*.py")
        if ("redis.call(" in path.read_text(encoding="utf-8") or "register_script(" in path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
